"""``ray-rag aws``: check the prerequisites, deploy the stack, upload PDFs, see status, tear it all down.

The stack is ``infra_cfn/template.yaml`` with ``infra_cfn/parameters.json``; parameters are layered as
file < environment (``RAY_RAG_ADMIN_CIDR``, ``RAY_RAG_ALERT_EMAIL``, ``RAY_RAG_DOMAIN_NAME``,
``RAY_RAG_CERTIFICATE_ARN``, ``RAY_RAG_OPENAI_API_KEY_SECRET_ARN``, ``RAY_RAG_PINECONE_API_KEY_SECRET_ARN``) <
``--set KEY=VALUE``. ``check`` and ``deploy`` refuse an ``AdminCidr`` wider than /16 unless
``--force-wide-admin-cidr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ray_rag_dagster.aws.checks import DeployPlan, admin_cidr_problem, run_checks
from ray_rag_dagster.aws.stack import (
    SUCCEEDED,
    AwsClients,
    StackError,
    StackEvent,
    control_rows,
    deploy_stack,
    describe_stack,
    empty_bucket,
    stack_outputs,
    upload_files,
    wait_for_stack,
)
from ray_rag_dagster.aws.template import (
    DEFAULT_PARAMETERS,
    DEFAULT_TEMPLATE,
    load_parameters,
    load_template,
    template_body,
)
from ray_rag_dagster.settings import Settings

aws_app = typer.Typer(help="Deploy to AWS: CloudFormation stack, uploads, status, teardown.", no_args_is_help=True)
console = Console()

StackName = Annotated[str, typer.Option("--stack-name", envvar="RAY_RAG_STACK_NAME", help="CloudFormation stack name.")]
TemplatePath = Annotated[Path, typer.Option("--template", exists=True, dir_okay=False, help="CloudFormation template.")]
ParametersPath = Annotated[Path, typer.Option("--parameters", exists=True, dir_okay=False, help="Parameters file (AWS CLI format).")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: KEY=VALUE (repeatable).")]
AdminCidr = Annotated[str | None, typer.Option(envvar="RAY_RAG_ADMIN_CIDR", help="Network allowed to the UIs, e.g. 203.0.113.7/32.")]
AlertEmail = Annotated[str | None, typer.Option(envvar="RAY_RAG_ALERT_EMAIL", help="Email for the alarms and the first UI user.")]
DomainName = Annotated[str | None, typer.Option(envvar="RAY_RAG_DOMAIN_NAME", help="Host name of the UIs, e.g. rag.example.org.")]
CertificateArn = Annotated[str | None, typer.Option(envvar="RAY_RAG_CERTIFICATE_ARN", help="ACM certificate for the host name.")]
ForceWideAdminCidr = Annotated[bool, typer.Option("--force-wide-admin-cidr", help="Allow an AdminCidr wider than /16.")]
PollSeconds = Annotated[float, typer.Option(help="Seconds between progress polls.")]
TimeoutMinutes = Annotated[float, typer.Option(help="Give up waiting after this long.")]


def resolve_parameters(
    settings: Settings, parameters_file: Path, options: dict[str, str | None], overrides: list[str]
) -> dict[str, str]:
    """Parameters file < options (``AdminCidr``, ``AlertEmail``... from flags or environment) < ``--set``."""
    values = load_parameters(parameters_file)
    layered = {
        **options,
        "OpenAISecretArn": settings.openai_api_key_secret_arn,
        "PineconeSecretArn": settings.pinecone_api_key_secret_arn,
    }
    values.update({key: value for key, value in layered.items() if value})
    for item in overrides:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise typer.BadParameter(f"--set {item!r}: expected KEY=VALUE")
        values[key] = value
    return values


def _outputs_table(title: str, outputs: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for key, value in sorted(outputs.items()):
        table.add_row(key, value)
    return table


def _follow(clients: AwsClients, stack_id: str, total: int, verb: str, poll_seconds: float, timeout_minutes: float) -> str:
    """Wait for the stack with a progress bar: resources done out of the template's count, latest event."""
    done: set[str] = set()
    failures: list[StackEvent] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(verb, total=total)

        def on_event(event: StackEvent) -> None:
            if event.resource_type == "AWS::CloudFormation::Stack":
                return
            if event.status.endswith("_COMPLETE"):
                done.add(event.logical_id)
            if event.status.endswith("_FAILED"):
                failures.append(event)
            progress.update(task, completed=len(done), description=f"{verb}: {event.logical_id} {event.status}")

        status = wait_for_stack(clients.cloudformation, stack_id, on_event=on_event, poll_seconds=poll_seconds,
                                timeout_seconds=timeout_minutes * 60)
        progress.update(task, description=f"{verb}: {status}", completed=total if status in SUCCEEDED else len(done))
    for event in failures:
        console.print(f"[red]{event.logical_id}[/] ({event.resource_type}) {event.status}: {event.reason}")
    return status


@aws_app.command()
def check(
    stack_name: StackName = "ray-rag",
    template: TemplatePath = DEFAULT_TEMPLATE,
    parameters: ParametersPath = DEFAULT_PARAMETERS,
    admin_cidr: AdminCidr = None,
    alert_email: AlertEmail = None,
    domain_name: DomainName = None,
    certificate_arn: CertificateArn = None,
    overrides: Overrides = None,
    force_wide_admin_cidr: ForceWideAdminCidr = False,
) -> None:
    """Check everything a deploy needs; each line PASS or FAIL with the fix."""
    settings = Settings()
    options = {"AdminCidr": admin_cidr, "AlertEmail": alert_email, "DomainName": domain_name, "CertificateArn": certificate_arn}
    plan = DeployPlan(stack_name, template_body(template), resolve_parameters(settings, parameters, options, overrides or []),
                      force_wide_admin_cidr)
    results = run_checks(AwsClients(settings), plan)
    table = Table(title=f"Prerequisites for stack {stack_name} in {settings.aws_region}", show_lines=True)
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(result.name, "[green]PASS[/]" if result.passed else "[red]FAIL[/]", result.detail, result.fix)
    console.print(table)
    failed = sum(not result.passed for result in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@aws_app.command()
def deploy(
    stack_name: StackName = "ray-rag",
    template: TemplatePath = DEFAULT_TEMPLATE,
    parameters: ParametersPath = DEFAULT_PARAMETERS,
    admin_cidr: AdminCidr = None,
    alert_email: AlertEmail = None,
    domain_name: DomainName = None,
    certificate_arn: CertificateArn = None,
    overrides: Overrides = None,
    force_wide_admin_cidr: ForceWideAdminCidr = False,
    poll_seconds: PollSeconds = 10.0,
    timeout_minutes: TimeoutMinutes = 60.0,
) -> None:
    """Create or update the stack, wait for it, print its outputs."""
    settings = Settings()
    options = {"AdminCidr": admin_cidr, "AlertEmail": alert_email, "DomainName": domain_name, "CertificateArn": certificate_arn}
    values = resolve_parameters(settings, parameters, options, overrides or [])
    # An update that does not name AdminCidr keeps the stack's value, which passed this test when it was set.
    if "AdminCidr" in values and (problem := admin_cidr_problem(values["AdminCidr"], force_wide_admin_cidr)):
        console.print(f"[red]refusing to deploy: {problem}[/]")
        raise typer.Exit(1)
    clients = AwsClients(settings)
    try:
        action = deploy_stack(clients.cloudformation, stack_name, template_body(template), values)
    except StackError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    if action != "UNCHANGED":
        stack = describe_stack(clients.cloudformation, stack_name)
        assert stack is not None  # just created or updated
        total = len(load_template(template)["Resources"])
        status = _follow(clients, stack["StackId"], total, f"{action.lower()} {stack_name}", poll_seconds, timeout_minutes)
        if status not in SUCCEEDED:
            console.print(f"[red]stack {stack_name}: {status}[/]")
            raise typer.Exit(1)
    else:
        console.print(f"stack {stack_name}: no changes")
    console.print(_outputs_table(f"Stack {stack_name}", stack_outputs(clients.cloudformation, stack_name)))


@aws_app.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="PDF files to put in the inbox (s3://<bucket>/input/).")],
    stack_name: StackName = "ray-rag",
) -> None:
    """Upload PDFs to the stack's inbox; the Dagster sensor picks them up."""
    clients = AwsClients(Settings())
    try:
        bucket = stack_outputs(clients.cloudformation, stack_name)["BucketName"]
        keys = upload_files(clients.s3, bucket, paths)
    except (StackError, FileNotFoundError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    for key in keys:
        console.print(f"uploaded s3://{bucket}/{key}")


@aws_app.command()
def status(stack_name: StackName = "ray-rag") -> None:
    """The stack's status and outputs, and the documents in its control table."""
    clients = AwsClients(Settings())
    stack = describe_stack(clients.cloudformation, stack_name)
    if stack is None:
        console.print(f"stack {stack_name}: does not exist")
        raise typer.Exit(1)
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    console.print(f"stack {stack_name}: [bold]{stack['StackStatus']}[/]")
    console.print(_outputs_table(f"Stack {stack_name}", outputs))
    table_name = outputs.get("ControlTableName")
    if not table_name:
        return
    try:
        rows = control_rows(clients.client("dynamodb"), table_name)
    except Exception as error:  # noqa: BLE001 - status still shows the stack when the table is unreachable
        console.print(f"[yellow]control table {table_name} unreachable: {type(error).__name__}[/]")
        return
    console.print(_documents_table(table_name, rows))


def _documents_table(table_name: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Documents ({table_name}, {len(rows)} versions)")
    columns = ("document_id", "processing_version", "status", "current_stage", "updated_at", "error")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(column) or "") for column in columns))
    return table


@aws_app.command()
def teardown(
    stack_name: StackName = "ray-rag",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    poll_seconds: PollSeconds = 10.0,
    timeout_minutes: TimeoutMinutes = 60.0,
) -> None:
    """Empty the bucket (every version), delete the stack, wait until it is gone."""
    clients = AwsClients(Settings())
    stack = describe_stack(clients.cloudformation, stack_name)
    if stack is None:
        console.print(f"stack {stack_name}: does not exist")
        return
    if not yes and not typer.confirm(f"Delete stack {stack_name} and every object in its bucket?"):
        raise typer.Exit(1)
    bucket = next((item["OutputValue"] for item in stack.get("Outputs", []) if item["OutputKey"] == "BucketName"), None)
    if bucket:
        console.print(f"emptied s3://{bucket}: {empty_bucket(clients.s3, bucket)} object versions deleted")
    total = len(clients.cloudformation.list_stack_resources(StackName=stack["StackId"])["StackResourceSummaries"])
    clients.cloudformation.delete_stack(StackName=stack["StackId"])
    status = _follow(clients, stack["StackId"], total, f"delete {stack_name}", poll_seconds, timeout_minutes)
    if status != "DELETE_COMPLETE":
        console.print(f"[red]stack {stack_name}: {status}[/]")
        raise typer.Exit(1)
    console.print(f"stack {stack_name} deleted. The database's final snapshot is kept: delete it in the RDS console "
                  "(Snapshots) when you no longer need Dagster's run history.")
