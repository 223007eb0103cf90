"""Prerequisite checks before a deploy: each one passes or fails with the fix.

The checks read; they never create anything and never read a secret's value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from ray_rag_dagster.aws.stack import AwsClients, describe_stack

# What creating the stack needs, simulated against the caller's policies when IAM allows it.
DEPLOY_ACTIONS = (
    "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DeleteStack",
    "ec2:CreateVpc", "ec2:CreateSecurityGroup", "ec2:CreateVpcEndpoint",
    "ecs:CreateCluster", "ecs:CreateService", "ecs:RegisterTaskDefinition",
    "iam:CreateRole", "iam:PassRole", "iam:PutRolePolicy",
    "rds:CreateDBInstance", "s3:CreateBucket", "s3:PutLifecycleConfiguration", "dynamodb:CreateTable",
    "secretsmanager:CreateSecret", "servicediscovery:CreatePrivateDnsNamespace",
    "elasticloadbalancing:CreateLoadBalancer", "application-autoscaling:RegisterScalableTarget",
    "cognito-idp:CreateUserPool", "acm:DescribeCertificate",
    "cloudwatch:PutMetricAlarm", "sns:CreateTopic", "logs:CreateLogGroup",
)
VPCS_PER_REGION_QUOTA = ("vpc", "L-F678F1CE")
DEFAULT_VPC_QUOTA = 5
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IPV4_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
WIDEST_ADMIN_PREFIX = 16  # AdminCidr may not be wider than a /16 unless forced
FORCE_WIDE_FLAG = "--force-wide-admin-cidr"
# The Ray head hosts one run worker (Ray job driver) per concurrent Dagster run, and MaxWorkers runs at once.
HEAD_BASE_MEMORY_MB = 2048
HEAD_MEMORY_PER_RUN_MB = 512


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DeployPlan:
    """What the checks look at: the stack to create and the parameters it would get."""

    stack_name: str
    template_body: str
    parameters: dict[str, str]
    force_wide_admin_cidr: bool = False


def _error_text(error: Exception) -> str:
    """One short line: AWS's code and message, or the first line of anything else."""
    if isinstance(error, ClientError):
        text = f"{error.response['Error'].get('Code', '')}: {error.response['Error'].get('Message', '')}".strip(": ")
    else:
        text = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return text if len(text) <= 160 else text[:157] + "..."


def run_checks(clients: AwsClients, plan: DeployPlan) -> list[CheckResult]:
    """Every check, in the order a student fixes them."""
    identity = _identity(clients)
    checks: list[Callable[[], CheckResult]] = [
        lambda: _credentials(identity),
        lambda: _region(clients),
        lambda: _permissions(clients, identity),
        lambda: _admin_cidr(plan.parameters, plan.force_wide_admin_cidr),
        lambda: _alert_email(plan.parameters),
        lambda: _certificate(clients, plan.parameters),
        lambda: _head_memory(plan.parameters),
        lambda: _secret(clients, plan.parameters, "OpenAISecretArn", "openai-api-key", "OPENAI"),
        lambda: _secret(clients, plan.parameters, "PineconeSecretArn", "pinecone-api-key", "PINECONE"),
        lambda: _bucket(clients, plan, identity),
        lambda: _image(clients, plan.parameters, identity),
        lambda: _vpc_quota(clients, plan.stack_name),
        lambda: _template(clients, plan.template_body),
    ]
    results = []
    for check in checks:
        try:
            results.append(check())
        except (ClientError, BotoCoreError) as error:  # a check that cannot run is a failed check
            results.append(CheckResult("(check error)", False, _error_text(error), "see the message"))
    return results


def _identity(clients: AwsClients) -> dict[str, str] | Exception:
    try:
        return clients.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as error:
        return error


def _credentials(identity: dict[str, str] | Exception) -> CheckResult:
    if isinstance(identity, Exception):
        return CheckResult("credentials", False, _error_text(identity),
                           "run `aws configure` (or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    return CheckResult("credentials", True, f"account {identity['Account']} as {identity['Arn']}")


def _region(clients: AwsClients) -> CheckResult:
    known = boto3.session.Session().get_available_regions("ecs")
    if clients.region in known or clients.endpoint_url:
        return CheckResult("region", True, clients.region)
    return CheckResult("region", False, f"{clients.region!r} is not an ECS region",
                       "export RAY_RAG_AWS_REGION=us-east-1 (or another region with ECS Fargate)")


def _principal_arn(caller_arn: str) -> str:
    """IAM simulates users and roles, not STS sessions: map an assumed-role session to its role."""
    match = re.match(r"^arn:(aws[a-z-]*):sts::(\d+):assumed-role/([^/]+)/", caller_arn)
    return f"arn:{match.group(1)}:iam::{match.group(2)}:role/{match.group(3)}" if match else caller_arn


def _permissions(clients: AwsClients, identity: dict[str, str] | Exception) -> CheckResult:
    fix = "attach a policy allowing CloudFormation, EC2, ECS, IAM, RDS, S3, DynamoDB, Secrets Manager, ELB, logs"
    if isinstance(identity, Exception):
        return CheckResult("permissions", False, "no credentials", fix)
    if identity["Arn"].endswith(":root"):
        return CheckResult("permissions", True, "root user: everything is allowed (an IAM user or role is safer)")
    try:
        evaluation = clients.client("iam").simulate_principal_policy(
            PolicySourceArn=_principal_arn(identity["Arn"]), ActionNames=list(DEPLOY_ACTIONS))
    except (ClientError, BotoCoreError, ResponseParserError) as error:  # also a stand-in without IAM simulation
        return _permissions_by_reading(clients, f"cannot simulate ({_error_text(error)})", fix)
    denied = [result["EvalActionName"] for result in evaluation["EvaluationResults"] if result["EvalDecision"] != "allowed"]
    if denied:
        return CheckResult("permissions", False, f"denied: {', '.join(denied)}", fix)
    return CheckResult("permissions", True, f"all {len(DEPLOY_ACTIONS)} deploy actions allowed (simulated)")


def _permissions_by_reading(clients: AwsClients, why: str, fix: str) -> CheckResult:
    """Without simulation, try one harmless read per service the stack creates."""
    reads = {
        "cloudformation": lambda: clients.cloudformation.list_stacks(),
        "ec2": lambda: clients.client("ec2").describe_vpcs(MaxResults=5),
        "ecs": lambda: clients.client("ecs").list_clusters(maxResults=1),
        "iam": lambda: clients.client("iam").list_roles(MaxItems=1),
        "rds": lambda: clients.client("rds").describe_db_instances(MaxRecords=20),
        "s3": lambda: clients.s3.list_buckets(),
        "dynamodb": lambda: clients.client("dynamodb").list_tables(Limit=1),
    }
    failed = []
    for service, read in reads.items():
        try:
            read()
        except (ClientError, BotoCoreError) as error:
            failed.append(f"{service} ({_error_text(error)})")
    if failed:
        return CheckResult("permissions", False, f"{why}; reads failed: {', '.join(failed)}", fix)
    return CheckResult("permissions", True, f"{why}; reading {', '.join(reads)} works")


def admin_cidr_problem(value: str, force: bool = False) -> str | None:
    """Why ``value`` may not be the admin network, or None when it may (``deploy`` refuses for the same reason)."""
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        return f"AdminCidr {value!r} is not an IPv4 CIDR"
    if network.prefixlen < WIDEST_ADMIN_PREFIX and not force:
        return (f"AdminCidr {value} is wider than /{WIDEST_ADMIN_PREFIX}: it would open the Dagster UI and the Ray "
                f"dashboard's sign-in page to {network.num_addresses:,} addresses. Use your own address (a.b.c.d/32); "
                f"if you really mean it, add {FORCE_WIDE_FLAG}")
    return None


def _admin_cidr(parameters: dict[str, str], force: bool) -> CheckResult:
    fix = "--set AdminCidr=<your public IP>/32 (see https://checkip.amazonaws.com) or export RAY_RAG_ADMIN_CIDR"
    value = parameters.get("AdminCidr", "")
    problem = admin_cidr_problem(value, force)
    if problem:
        return CheckResult("admin network", False, problem, fix)
    if ipaddress.IPv4Network(value).prefixlen < WIDEST_ADMIN_PREFIX:
        return CheckResult("admin network", True, f"{value}: wider than /{WIDEST_ADMIN_PREFIX}, allowed by {FORCE_WIDE_FLAG}")
    return CheckResult("admin network", True, f"Dagster UI and Ray dashboard reachable from {value} only")


def _covers(pattern: str, host: str) -> bool:
    """Whether a certificate name (``rag.example.org`` or ``*.example.org``) covers ``host``."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.count(".") == pattern.count(".") and host.endswith(pattern[1:])
    return pattern == host


def _certificate(clients: AwsClients, parameters: dict[str, str]) -> CheckResult:
    domain, arn = parameters.get("DomainName", ""), parameters.get("CertificateArn", "")
    fix = ("aws acm request-certificate --domain-name <host> --validation-method DNS (add the DNS record it asks "
           "for), then --set DomainName=<host> --set CertificateArn=<ARN> or export RAY_RAG_DOMAIN_NAME and "
           "RAY_RAG_CERTIFICATE_ARN")
    if not domain or not arn:
        return CheckResult("HTTPS certificate", False, "DomainName and CertificateArn must both be set", fix)
    try:
        certificate = clients.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    except ClientError as error:
        return CheckResult("HTTPS certificate", False, _error_text(error), fix)
    names = [certificate.get("DomainName", ""), *certificate.get("SubjectAlternativeNames", [])]
    if certificate.get("Status") != "ISSUED":
        return CheckResult("HTTPS certificate", False, f"{arn} is {certificate.get('Status')}, not ISSUED",
                           "finish its DNS validation (aws acm describe-certificate shows the record to add)")
    if not any(_covers(name, domain) for name in names if name):
        return CheckResult("HTTPS certificate", False, f"the certificate covers {', '.join(sorted(set(names)))}, not {domain}", fix)
    return CheckResult("HTTPS certificate", True, f"https://{domain} with {certificate.get('DomainName')} (ISSUED)")


def _head_memory(parameters: dict[str, str]) -> CheckResult:
    try:
        memory, workers = int(parameters.get("RayHeadMemory", "8192")), int(parameters.get("MaxWorkers", "10"))
    except ValueError:
        return CheckResult("Ray head memory", False, "RayHeadMemory and MaxWorkers must be numbers", "fix the parameters")
    needed = HEAD_BASE_MEMORY_MB + HEAD_MEMORY_PER_RUN_MB * workers
    if memory < needed:
        return CheckResult("Ray head memory", False,
                           f"{memory} MB for the head and up to {workers} run workers on it (MaxWorkers) needs {needed} MB",
                           f"--set RayHeadMemory={-(-needed // 1024) * 1024} or a smaller MaxWorkers")
    return CheckResult("Ray head memory", True, f"{memory} MB: the head and up to {workers} concurrent runs")


def _alert_email(parameters: dict[str, str]) -> CheckResult:
    value = parameters.get("AlertEmail", "")
    if re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        return CheckResult("alert email", True, f"alarms go to {value} (confirm SNS's email)")
    return CheckResult("alert email", False, "AlertEmail not set", "--set AlertEmail=you@example.org or export RAY_RAG_ALERT_EMAIL")


def _secret(clients: AwsClients, parameters: dict[str, str], key: str, name: str, setting: str) -> CheckResult:
    fix = (f"aws secretsmanager create-secret --name ray-rag/{name} --secret-string <key>, then "
           f"export RAY_RAG_{setting}_API_KEY_SECRET_ARN=<its ARN> (or --set {key}=<ARN>)")
    arn = parameters.get(key, "")
    if not arn:
        return CheckResult(f"secret {key}", False, "not set", fix)
    try:
        secret = clients.client("secretsmanager").describe_secret(SecretId=arn)  # metadata only, never the value
    except ClientError as error:
        return CheckResult(f"secret {key}", False, _error_text(error), fix)
    if secret.get("DeletedDate"):
        return CheckResult(f"secret {key}", False, f"{secret['Name']} is scheduled for deletion",
                           f"aws secretsmanager restore-secret --secret-id {arn}")
    return CheckResult(f"secret {key}", True, f"{secret['Name']} exists")


def _bucket(clients: AwsClients, plan: DeployPlan, identity: dict[str, str] | Exception) -> CheckResult:
    if isinstance(identity, Exception):
        return CheckResult("bucket name", False, "no credentials (the name includes the account id)", "fix credentials")
    project = plan.parameters.get("ProjectName", "ray-rag")
    name = f"{project}-{identity['Account']}-{clients.region}"  # as the template names it
    fix = "--set ProjectName=<another name> (lowercase letters, digits, hyphens)"
    if not BUCKET_NAME.match(name) or ".." in name or IPV4_ADDRESS.match(name):
        return CheckResult("bucket name", False, f"{name!r} is not a valid S3 bucket name", fix)
    try:
        clients.s3.head_bucket(Bucket=name)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("404", "NoSuchBucket", "NotFound"):
            return CheckResult("bucket name", True, f"{name} is available")
        return CheckResult("bucket name", False, f"{name} is owned by another account ({code})", fix)
    if describe_stack(clients.cloudformation, plan.stack_name) is not None:
        return CheckResult("bucket name", True, f"{name} exists: it belongs to stack {plan.stack_name}")
    return CheckResult("bucket name", False, f"{name} already exists outside the stack",
                       f"empty and delete it (aws s3 rb s3://{name} --force) or {fix}")


def _image(clients: AwsClients, parameters: dict[str, str], identity: dict[str, str] | Exception) -> CheckResult:
    repository = parameters.get("EcrRepositoryName", "ray-rag-dagster")
    tag = parameters.get("ImageTag", "latest")
    account = identity["Account"] if isinstance(identity, dict) else "<account>"
    registry = f"{account}.dkr.ecr.{clients.region}.amazonaws.com"
    push = (f"aws ecr get-login-password | docker login --username AWS --password-stdin {registry}; "
            f"docker build -f docker/Dockerfile -t {registry}/{repository}:{tag} . && docker push {registry}/{repository}:{tag}")
    try:
        images = clients.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "RepositoryNotFoundException":
            return CheckResult("image in ECR", False, f"no repository {repository}",
                               f"aws ecr create-repository --repository-name {repository}; {push}")
        if code == "ImageNotFoundException":
            return CheckResult("image in ECR", False, f"{repository}:{tag} not pushed", push)
        raise
    pushed = images["imageDetails"][0].get("imagePushedAt")
    return CheckResult("image in ECR", True, f"{registry}/{repository}:{tag}" + (f" pushed {pushed:%Y-%m-%d}" if pushed else ""))


def _vpc_quota(clients: AwsClients, stack_name: str) -> CheckResult:
    if describe_stack(clients.cloudformation, stack_name) is not None:
        return CheckResult("VPC quota", True, "the stack exists: its VPC is already counted")
    try:
        quota = int(clients.client("service-quotas").get_service_quota(
            ServiceCode=VPCS_PER_REGION_QUOTA[0], QuotaCode=VPCS_PER_REGION_QUOTA[1])["Quota"]["Value"])
    except (ClientError, BotoCoreError):
        quota = DEFAULT_VPC_QUOTA  # Service Quotas may be unreadable; 5 is AWS's default
    used = len(clients.client("ec2").describe_vpcs()["Vpcs"])
    if used < quota:
        return CheckResult("VPC quota", True, f"{used} of {quota} VPCs used")
    return CheckResult("VPC quota", False, f"{used} of {quota} VPCs used",
                       "delete an unused VPC or request more in Service Quotas (Amazon VPC: VPCs per Region)")


def _template(clients: AwsClients, body: str) -> CheckResult:
    try:
        result: dict[str, Any] = clients.cloudformation.validate_template(TemplateBody=body)
    except ClientError as error:
        return CheckResult("template", False, _error_text(error), "fix infra_cfn/template.yaml (run cfn-lint on it)")
    return CheckResult("template", True, f"valid: {len(result.get('Parameters', []))} parameters, {len(body)} bytes")
