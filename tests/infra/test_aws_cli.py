"""`ray-rag aws check | deploy | upload | status | teardown` against moto's server.

moto's CloudFormation creates only some resource types and lacks ``Fn::Cidr``, so the stack deployed here is
the full template reduced to what moto creates (tests/infra/moto_template.py): the bucket, the three tables,
log groups, the task roles, the SNS topic and the cluster, with the full template's properties. The full
template itself goes through ``check`` (CloudFormation's ValidateTemplate), cfn-lint and checkov.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from ray_rag_dagster.aws.checks import _head_memory, admin_cidr_problem
from ray_rag_dagster.aws.cli import aws_app
from ray_rag_dagster.aws.template import load_template
from tests.conftest import PDFS
from tests.infra.moto_template import reduce_for_moto
from tests.standins.aws import moto_server

STACK = "ray-rag-test"
ADMIN = ["--admin-cidr", "203.0.113.7/32", "--alert-email", "ops@example.org"]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    saved = dict(os.environ)
    with moto_server() as url:
        os.environ["RAY_RAG_AWS_ENDPOINT_URL"] = url
        os.environ["RAY_RAG_AWS_REGION"] = "us-east-1"
        yield url
    os.environ.clear()
    os.environ.update(saved)


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def secret_arns(endpoint: str) -> list[str]:
    secrets = client(endpoint, "secretsmanager")
    return [
        "--set", f"OpenAISecretArn={secrets.create_secret(Name='test/openai', SecretString='sk-not-real')['ARN']}",
        "--set", f"PineconeSecretArn={secrets.create_secret(Name='test/pinecone', SecretString='pc-not-real')['ARN']}",
    ]


@pytest.fixture(scope="module")
def https(endpoint: str) -> list[str]:
    """DomainName and an ISSUED certificate for it (moto issues a private CA's certificate at once)."""
    arn = client(endpoint, "acm").request_certificate(
        DomainName="rag.example.org",
        CertificateAuthorityArn="arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/00000000-0000-0000-0000-000000000000",
    )["CertificateArn"]
    return ["--domain-name", "rag.example.org", "--certificate-arn", arn]


@pytest.fixture(scope="module")
def moto_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reduced = reduce_for_moto(load_template())
    assert {"DocumentBucket", "ControlTable", "AuditTable", "MetricsTable", "RayWorkerTaskRole", "RayHeadTaskRole"} <= set(
        reduced["Resources"])
    path = tmp_path_factory.mktemp("cfn") / "moto-template.json"
    path.write_text(json.dumps(reduced))
    return path


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(aws_app, list(args), env={"COLUMNS": "250"})
    return result


def rows_of(output: str) -> dict[str, str]:
    """check's table: the result column by check name."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 3 and cells[2] in ("PASS", "FAIL"):
            rows[cells[1]] = cells[2]
    return rows


def test_check_reports_each_prerequisite_with_a_fix(endpoint: str, secret_arns: list[str]) -> None:
    result = invoke("check", "--stack-name", STACK, "--set", "AdminCidr=0.0.0.0/0", *secret_arns[:2])
    rows = rows_of(result.output)
    assert result.exit_code == 1
    assert rows["credentials"] == rows["region"] == rows["template"] == rows["bucket name"] == "PASS"
    assert rows["permissions"] == "PASS"  # moto cannot simulate IAM: the check falls back to reads
    assert rows["admin network"] == "FAIL" and rows["alert email"] == "FAIL"
    assert rows["HTTPS certificate"] == "FAIL" and "DomainName and CertificateArn" in result.output
    assert rows["Ray head memory"] == "PASS"
    assert rows["secret OpenAISecretArn"] == "PASS" and rows["secret PineconeSecretArn"] == "FAIL"
    assert rows["image in ECR"] == "FAIL" and "aws ecr create-repository" in result.output
    assert "sk-not-real" not in result.output


def test_check_passes_once_everything_is_in_place(endpoint: str, secret_arns: list[str], https: list[str]) -> None:
    ecr = client(endpoint, "ecr")
    ecr.create_repository(repositoryName="ray-rag-dagster")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:" + "0" * 64},
                "layers": []}
    ecr.put_image(repositoryName="ray-rag-dagster", imageManifest=json.dumps(manifest), imageTag="latest")
    result = invoke("check", "--stack-name", STACK, *ADMIN, *secret_arns, *https)
    assert result.exit_code == 0, result.output
    assert set(rows_of(result.output).values()) == {"PASS"} and len(rows_of(result.output)) == 13


@pytest.mark.parametrize(("cidr", "force", "accepted"), [
    ("0.0.0.0/0", False, False), ("10.0.0.0/8", False, False), ("10.0.0.0/15", False, False),
    ("10.1.0.0/16", False, True), ("10.1.0.0/17", False, True), ("203.0.113.7/32", False, True),
    ("0.0.0.0/0", True, True), ("10.0.0.0/8", True, True), ("not-a-cidr", True, False),
])
def test_admin_network_wider_than_16_is_refused_unless_forced(cidr: str, force: bool, accepted: bool) -> None:
    problem = admin_cidr_problem(cidr, force)
    assert (problem is None) == accepted, problem
    if not accepted and cidr != "not-a-cidr":
        assert "wider than /16" in problem and "--force-wide-admin-cidr" in problem


def test_check_accepts_a_wide_admin_network_only_with_the_force_flag(
    endpoint: str, secret_arns: list[str], https: list[str]
) -> None:
    refused = invoke("check", "--stack-name", STACK, "--set", "AdminCidr=10.0.0.0/8", *secret_arns, *https)
    assert rows_of(refused.output)["admin network"] == "FAIL" and refused.exit_code == 1
    forced = invoke("check", "--stack-name", STACK, "--set", "AdminCidr=10.0.0.0/8", "--force-wide-admin-cidr",
                    *secret_arns, *https)
    assert rows_of(forced.output)["admin network"] == "PASS", forced.output


def test_head_memory_must_hold_a_run_worker_per_concurrent_run() -> None:
    assert _head_memory({"RayHeadMemory": "8192", "MaxWorkers": "10"}).passed
    short = _head_memory({"RayHeadMemory": "4096", "MaxWorkers": "10"})
    assert not short.passed and "7168 MB" in short.detail and "RayHeadMemory=7168" in short.fix
    assert _head_memory({"RayHeadMemory": "4096", "MaxWorkers": "4"}).passed


def test_check_fails_a_certificate_that_is_not_issued_or_for_another_name(endpoint: str, secret_arns: list[str]) -> None:
    acm = client(endpoint, "acm")
    pending = acm.request_certificate(DomainName="rag.example.org")["CertificateArn"]  # waiting for DNS validation
    result = invoke("check", "--stack-name", STACK, *ADMIN, *secret_arns, "--domain-name", "rag.example.org",
                    "--certificate-arn", pending)
    assert rows_of(result.output)["HTTPS certificate"] == "FAIL" and "not ISSUED" in result.output
    other = acm.request_certificate(DomainName="*.example.com", CertificateAuthorityArn=(
        "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/00000000-0000-0000-0000-000000000000"))["CertificateArn"]
    result = invoke("check", "--stack-name", STACK, *ADMIN, *secret_arns, "--domain-name", "rag.example.org",
                    "--certificate-arn", other)
    assert rows_of(result.output)["HTTPS certificate"] == "FAIL" and "not rag.example.org" in result.output
    result = invoke("check", "--stack-name", STACK, *ADMIN, *secret_arns, "--domain-name", "ui.example.com",
                    "--certificate-arn", other)
    assert rows_of(result.output)["HTTPS certificate"] == "PASS"  # *.example.com covers ui.example.com


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8"])
def test_deploy_refuses_a_wide_admin_network_before_calling_aws(
    endpoint: str, secret_arns: list[str], https: list[str], moto_template: Path, cidr: str
) -> None:
    result = invoke("deploy", "--stack-name", "ray-rag-wide", "--template", str(moto_template), "--set", f"AdminCidr={cidr}",
                    "--alert-email", "ops@example.org", *secret_arns, *https, "--poll-seconds", "0.05")
    assert result.exit_code == 1
    assert "refusing to deploy" in result.output and "wider than /16" in result.output
    assert "--force-wide-admin-cidr" in result.output
    stacks = client(endpoint, "cloudformation").list_stacks()["StackSummaries"]
    assert "ray-rag-wide" not in [stack["StackName"] for stack in stacks]


def test_deploy_accepts_a_wide_admin_network_when_forced(
    endpoint: str, secret_arns: list[str], https: list[str], moto_template: Path
) -> None:
    result = invoke("deploy", "--stack-name", "ray-rag-wide", "--template", str(moto_template), "--set", "AdminCidr=10.0.0.0/8",
                    "--force-wide-admin-cidr", "--alert-email", "ops@example.org", *secret_arns, *https,
                    "--poll-seconds", "0.05")
    assert result.exit_code == 0, result.output
    assert "CREATE_COMPLETE" in result.output
    removed = invoke("teardown", "--stack-name", "ray-rag-wide", "--yes", "--poll-seconds", "0.05")
    assert removed.exit_code == 0, removed.output


def test_deploy_upload_status_teardown(endpoint: str, secret_arns: list[str], https: list[str], moto_template: Path) -> None:
    deployed = invoke("deploy", "--stack-name", STACK, "--template", str(moto_template), *ADMIN, *secret_arns, *https,
                      "--poll-seconds", "0.05")
    assert deployed.exit_code == 0, deployed.output
    assert "CREATE_COMPLETE" in deployed.output
    outputs = {o["OutputKey"]: o["OutputValue"] for o in
               client(endpoint, "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}
    bucket = outputs["BucketName"]
    assert bucket == "ray-rag-123456789012-us-east-1" and bucket in deployed.output
    s3 = client(endpoint, "s3")
    # moto's CloudFormation skips VersioningConfiguration; turn it on as the real stack has it, so teardown
    # must delete old versions and delete markers too.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    control = client(endpoint, "dynamodb").describe_table(TableName=outputs["ControlTableName"])["Table"]
    assert [key["AttributeName"] for key in control["KeySchema"]] == ["document_id", "processing_version"]

    # An update without --admin-cidr/--alert-email keeps the values the stack has.
    again = invoke("deploy", "--stack-name", STACK, "--template", str(moto_template), *secret_arns, "--poll-seconds", "0.05")
    assert again.exit_code == 0, again.output
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in
                  client(endpoint, "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["Parameters"]}
    assert parameters["AdminCidr"] == "203.0.113.7/32" and parameters["AlertEmail"] == "ops@example.org"
    assert parameters["DomainName"] == "rag.example.org"

    pdf = min(PDFS.rglob("*.pdf"), key=lambda path: path.stat().st_size)
    uploaded = invoke("upload", str(pdf), "--stack-name", STACK)
    assert uploaded.exit_code == 0, uploaded.output
    assert s3.get_object(Bucket=bucket, Key=f"input/{pdf.name}")["Body"].read() == pdf.read_bytes()
    s3.put_object(Bucket=bucket, Key=f"input/{pdf.name}", Body=b"a second version")
    s3.delete_object(Bucket=bucket, Key=f"input/{pdf.name}")  # two versions and a delete marker to remove
    assert invoke("upload", "missing.pdf", "--stack-name", STACK).exit_code == 1

    client(endpoint, "dynamodb").put_item(TableName=outputs["ControlTableName"], Item={
        "document_id": {"S": "protocol-0a1b2c3d"}, "processing_version": {"S": "v1"}, "status": {"S": "COMPLETED"},
        "current_stage": {"S": "vector_index_entries"}, "updated_at": {"S": "2026-01-01T00:00:00+00:00"}})
    status = invoke("status", "--stack-name", STACK)
    assert status.exit_code == 0, status.output
    assert "UPDATE_COMPLETE" in status.output and "protocol-0a1b2c3d" in status.output and "vector_index_entries" in status.output

    removed = invoke("teardown", "--stack-name", STACK, "--yes", "--poll-seconds", "0.05")
    assert removed.exit_code == 0, removed.output
    assert "3 object versions deleted" in removed.output
    assert invoke("status", "--stack-name", STACK).exit_code == 1
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
