"""The template says what the issue asks: admin-only UIs, Spot workers with bounds, secrets as ECS secrets,
scoped IAM, protected storage, alarms, outputs. Read through the same loader the deploy commands use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ray_rag_dagster.aws.template import DEFAULT_TEMPLATE, MAX_INLINE_TEMPLATE_BYTES, load_template, template_body
from tests.infra.moto_template import references

RAY_DASHBOARD_PORT = 8265
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(DEFAULT_TEMPLATE)


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def ingress_rules(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every ingress rule with the group it opens: inline ones and AWS::EC2::SecurityGroupIngress resources."""
    rules = []
    for name, body in resources_of(template, "AWS::EC2::SecurityGroup").items():
        rules.extend((name, rule) for rule in body["Properties"].get("SecurityGroupIngress", []))
    for body in resources_of(template, "AWS::EC2::SecurityGroupIngress").values():
        rules.append((body["Properties"]["GroupId"]["Ref"], body["Properties"]))
    return rules


def covers(rule: dict[str, Any], port: int) -> bool:
    return rule["IpProtocol"] in ("-1", -1) or rule["FromPort"] <= port <= rule["ToPort"]


def test_sent_as_json_under_cloudformations_inline_limit() -> None:
    body = template_body(DEFAULT_TEMPLATE)
    assert len(body.encode()) <= MAX_INLINE_TEMPLATE_BYTES
    assert json.loads(body)["Resources"]["Database"]["Properties"]["MasterUserPassword"]["Fn::Sub"].startswith(
        "{{resolve:secretsmanager:")


def test_internet_reaches_only_the_admin_only_ports_from_admin_cidr(template: dict[str, Any]) -> None:
    rules = ingress_rules(template)
    cidr_rules = [rule for _, rule in rules if "CidrIp" in rule or "CidrIpv6" in rule]
    assert cidr_rules, "the load balancer must admit the admin network"
    for rule in cidr_rules:
        assert rule.get("CidrIp") == {"Ref": "AdminCidr"}, rule
        assert (rule["FromPort"], rule["ToPort"]) in ((80, 80), (443, 443), (RAY_DASHBOARD_PORT, RAY_DASHBOARD_PORT)), rule
    # The tasks' UI ports open only to the load balancer's group, which admits AdminCidr only.
    from_load_balancer = {(group, rule["FromPort"], rule["ToPort"]) for group, rule in rules
                          if rule.get("SourceSecurityGroupId") == {"Ref": "LoadBalancerSecurityGroup"}}
    assert from_load_balancer == {("DagsterSecurityGroup", 3000, 3000), ("RayHeadSecurityGroup", 8265, 8265)}
    assert template["Parameters"]["AdminCidr"].get("Default") is None, "no default: the user names their network"


def listeners(template: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {body["Properties"]["Port"]: body["Properties"]
            for body in resources_of(template, "AWS::ElasticLoadBalancingV2::Listener").values()}


def test_http_only_redirects_to_https(template: dict[str, Any]) -> None:
    by_port = listeners(template)
    assert set(by_port) == {80, 443, RAY_DASHBOARD_PORT}
    http = by_port[80]
    assert http["Protocol"] == "HTTP"
    [action] = http["DefaultActions"]
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS" and action["RedirectConfig"]["Port"] == "443"
    assert action["RedirectConfig"]["StatusCode"] == "HTTP_301"
    for port in (443, RAY_DASHBOARD_PORT):
        assert by_port[port]["Protocol"] == "HTTPS", port
        assert by_port[port]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
        assert by_port[port]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert template["Parameters"]["CertificateArn"]["AllowedPattern"].startswith("^arn:aws[a-z-]*:acm:")
    assert template["Outputs"]["DagsterUrl"]["Value"] == {"Fn::Sub": "https://${DomainName}"}
    assert template["Outputs"]["RayDashboardUrl"]["Value"] == {"Fn::Sub": "https://${DomainName}:8265"}


def test_both_uis_sit_behind_cognito_sign_in(template: dict[str, Any]) -> None:
    targets = {443: {"Ref": "DagsterTargets"}, RAY_DASHBOARD_PORT: {"Ref": "RayDashboardTargets"}}
    for port, target in targets.items():
        actions = sorted(listeners(template)[port]["DefaultActions"], key=lambda action: action["Order"])
        assert [action["Type"] for action in actions] == ["authenticate-cognito", "forward"], port
        auth = actions[0]["AuthenticateCognitoConfig"]
        assert auth["UserPoolArn"] == {"Fn::GetAtt": ["UiUserPool", "Arn"]}
        assert auth["UserPoolClientId"] == {"Ref": "UiUserPoolClient"}
        assert auth["OnUnauthenticatedRequest"] == "authenticate"
        assert actions[1]["TargetGroupArn"] == target
    pool = template["Resources"]["UiUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}, "no self sign-up"
    client = template["Resources"]["UiUserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is True and client["AllowedOAuthFlows"] == ["code"]
    assert client["CallbackURLs"] == [{"Fn::Sub": "https://${DomainName}/oauth2/idpresponse"},
                                      {"Fn::Sub": "https://${DomainName}:8265/oauth2/idpresponse"}]
    # The load balancer itself must reach Cognito's endpoints (HTTPS out), and nothing else but its targets.
    egress = template["Resources"]["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in egress] == [("tcp", 443, 443)]


def entrypoint_ports() -> dict[str, int]:
    """The Ray ports docker/entrypoint.sh pins with `ray start` flags."""
    text = (REPO / "docker" / "entrypoint.sh").read_text()
    flags = dict(re.findall(r"--((?:[a-z-]+-)?port)=(\d+)", text))
    return {name: int(value) for name, value in flags.items()}


def rules_into(template: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [rule for name, rule in ingress_rules(template) if name == group]


def test_no_rule_opens_all_ports_and_ray_ports_are_the_pinned_ones(template: dict[str, Any]) -> None:
    for group, rule in ingress_rules(template):
        assert rule["IpProtocol"] not in ("-1", -1) and rule["IpProtocol"] == "tcp", (group, rule)
        assert rule["ToPort"] - rule["FromPort"] < 1000, (group, rule)
    pins = entrypoint_ports()
    assert pins["port"] == 6379 and pins["dashboard-port"] == RAY_DASHBOARD_PORT
    node_ports = {pins[name] for name in ("node-manager-port", "object-manager-port", "runtime-env-agent-port",
                                          "dashboard-agent-grpc-port")}
    assert node_ports == {6380, 6381, 6382, 6383}
    worker_range = (pins["min-worker-port"], pins["max-worker-port"])
    agent = pins["dashboard-agent-listen-port"]

    def opened(group: str, port: int) -> set[str]:
        return {rule["SourceSecurityGroupId"]["Ref"] for rule in rules_into(template, group)
                if "SourceSecurityGroupId" in rule and covers(rule, port)}

    # The head: GCS and its node ports from the workers; the Jobs API only from Dagster and the load balancer.
    assert opened("RayHeadSecurityGroup", 6379) == {"RayWorkerSecurityGroup"}
    assert opened("RayHeadSecurityGroup", RAY_DASHBOARD_PORT) == {"DagsterSecurityGroup", "LoadBalancerSecurityGroup"}
    for port in (*node_ports, agent, *worker_range):
        assert opened("RayHeadSecurityGroup", port) == {"RayWorkerSecurityGroup"}, port
    for port in (*node_ports, *worker_range):
        assert opened("RayWorkerSecurityGroup", port) == {"RayHeadSecurityGroup", "RayWorkerSecurityGroup"}, port
    assert opened("RayWorkerSecurityGroup", agent) == {"RayHeadSecurityGroup"}  # the dashboard asks its agents
    # Closed everywhere: the Ray Client (nothing uses ray://), the metrics port, the GCS on workers.
    for group in ("RayHeadSecurityGroup", "RayWorkerSecurityGroup", "DagsterSecurityGroup"):
        assert opened(group, 10001) == set() and opened(group, pins["metrics-export-port"]) == set(), group
    assert opened("RayWorkerSecurityGroup", 6379) == set() and opened("RayWorkerSecurityGroup", RAY_DASHBOARD_PORT) == set()
    # Dagster's tasks accept only the UI from the load balancer; the database only Dagster and the run workers.
    assert [(rule["FromPort"], rule["SourceSecurityGroupId"]) for rule in rules_into(template, "DagsterSecurityGroup")] == [
        (3000, {"Ref": "LoadBalancerSecurityGroup"})]
    database = template["Resources"]["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert {rule["SourceSecurityGroupId"]["Ref"] for rule in database} == {"DagsterSecurityGroup", "RayHeadSecurityGroup"}
    assert all(rule["FromPort"] == rule["ToPort"] == 5432 for rule in database)
    services = {name: body["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
                for name, body in resources_of(template, "AWS::ECS::Service").items()}
    assert services == {"RayHeadService": [{"Ref": "RayHeadSecurityGroup"}], "RayWorkerService": [{"Ref": "RayWorkerSecurityGroup"}],
                        "DagsterWebserverService": [{"Ref": "DagsterSecurityGroup"}],
                        "DagsterDaemonService": [{"Ref": "DagsterSecurityGroup"}]}


def test_workers_run_on_spot_above_an_on_demand_base(template: dict[str, Any]) -> None:
    workers = template["Resources"]["RayWorkerService"]["Properties"]
    strategy = {item["CapacityProvider"]: item for item in workers["CapacityProviderStrategy"]}
    assert strategy["FARGATE"]["Base"] == {"Ref": "WorkerOnDemandBase"} and strategy["FARGATE"]["Weight"] == 0
    assert strategy["FARGATE_SPOT"]["Weight"] >= 1 and strategy["FARGATE_SPOT"].get("Base", 0) == 0
    head = template["Resources"]["RayHeadService"]["Properties"]
    assert [item["CapacityProvider"] for item in head["CapacityProviderStrategy"]] == ["FARGATE"]
    assert head["DesiredCount"] == 1
    providers = template["Resources"]["ClusterCapacityProviders"]["Properties"]["CapacityProviders"]
    assert set(providers) == {"FARGATE", "FARGATE_SPOT"}


def test_workers_autoscale_1_to_10_on_cpu_and_memory_with_a_scale_in_cooldown(template: dict[str, Any]) -> None:
    target = template["Resources"]["WorkerScaling"]["Properties"]
    params = template["Parameters"]
    assert target["MinCapacity"] == {"Ref": "MinWorkers"} and target["MaxCapacity"] == {"Ref": "MaxWorkers"}
    assert (params["MinWorkers"]["Default"], params["MaxWorkers"]["Default"]) == (1, 10)
    assert params["MinWorkers"]["MinValue"] >= 1 and params["MaxWorkers"]["MaxValue"] <= 10
    policies = resources_of(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metrics = set()
    for policy in policies:
        config = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        metrics.add(config["PredefinedMetricSpecification"]["PredefinedMetricType"])
        assert policy["Properties"]["ScalingTargetId"] == {"Ref": "WorkerScaling"}
        assert config["ScaleInCooldown"] > config["ScaleOutCooldown"] > 0
    assert metrics == {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}


def test_head_only_coordinates_and_workers_find_it_through_cloud_map(template: dict[str, Any]) -> None:
    head = template["Resources"]["RayHeadTask"]["Properties"]["ContainerDefinitions"][0]
    assert head["Command"][0] == "ray-head" and "--num-cpus=0" in head["Command"]
    head_env = {item["Name"]: item["Value"] for item in head["Environment"]}
    assert head_env["RAY_RAG_RAY_ADDRESS"] == "auto"  # the run workers are native drivers on the head
    assert "10001" not in json.dumps(template), "nothing uses the Ray Client port"
    registries = template["Resources"]["RayHeadService"]["Properties"]["ServiceRegistries"]
    assert registries == [{"RegistryArn": {"Fn::GetAtt": ["RayHeadDiscovery", "Arn"]}}]
    assert template["Resources"]["RayHeadDiscovery"]["Properties"]["Name"] == "ray-head"
    worker_env = {item["Name"]: item["Value"] for item in
                  template["Resources"]["RayWorkerTask"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert worker_env["RAY_HEAD_ADDRESS"] == {"Fn::Sub": "ray-head.${ProjectName}.internal:6379"}
    assert worker_env["RAY_RAG_RAY_ADDRESS"] == "auto"
    worker = template["Resources"]["RayWorkerTask"]["Properties"]["ContainerDefinitions"][0]
    store = int(next(arg for arg in worker["Command"] if arg.startswith("--object-store-memory=")).split("=")[1])
    assert store <= 1024**3, "a small object store leaves the task's memory to the warm stage workers"
    assert template["Resources"]["Namespace"]["Properties"]["Name"] == {"Fn::Sub": "${ProjectName}.internal"}


SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET")


def test_secrets_reach_containers_as_ecs_secrets_never_as_environment(template: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for task_name, task in resources_of(template, "AWS::ECS::TaskDefinition").items():
        for container in task["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                assert not any(word in variable["Name"] for word in SECRET_WORDS), (task_name, variable)
                assert "resolve:secretsmanager" not in json.dumps(variable), (task_name, variable)
            seen[task_name] = {secret["Name"] for secret in container.get("Secrets", [])}
            for secret in container.get("Secrets", []):
                assert set(secret) == {"Name", "ValueFrom"}
    assert {"RAY_RAG_OPENAI_API_KEY", "RAY_RAG_PINECONE_API_KEY", "RAY_AUTH_TOKEN"} <= seen["RayWorkerTask"]
    assert "DAGSTER_PG_PASSWORD" not in seen["RayWorkerTask"], "no Dagster run executes on a worker"
    # The run workers run on the head: Dagster's storage, the Ray token and the pipeline's keys.
    assert {"DAGSTER_PG_PASSWORD", "RAY_AUTH_TOKEN", "RAY_RAG_OPENAI_API_KEY", "RAY_RAG_PINECONE_API_KEY"} <= seen["RayHeadTask"]
    # The daemon submits and watches runs (Ray token); it calls neither OpenAI nor Pinecone.
    assert seen["DagsterDaemonTask"] == {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "RAY_AUTH_TOKEN"}
    assert seen["DagsterWebserverTask"] == {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "RAY_AUTH_TOKEN"}


def policy_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [statement for policy in role["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_role_is_scoped_to_its_own_resources(template: dict[str, Any]) -> None:
    roles = resources_of(template, "AWS::IAM::Role")
    assert len(roles) == 8, "one execution role and one task role per task kind"
    stack_resources = set(template["Resources"]) | set(template["Parameters"])
    for name, role in roles.items():
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "ecs-tasks.amazonaws.com"}], name
        for statement in policy_statements(role):
            assert statement["Effect"] == "Allow"
            for resource in as_list(statement["Resource"]):
                assert resource != "*", (name, statement)
                assert references(resource) & stack_resources, (name, resource)
            assert not any(action.endswith(":*") or action == "*" for action in as_list(statement["Action"])), name
    # The only "*" resource: ECR's GetAuthorizationToken, which AWS does not scope to a repository.
    pull = template["Resources"]["ImagePullPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in pull if s["Resource"] == "*"] == ["ecr:GetAuthorizationToken"]
    assert "EcrRepositoryName" in pull[1]["Resource"]["Fn::Sub"]


OUTPUT_PREFIXES = {"extracted", "chunks", "enriched", "embeddings"}


def allowed(role: dict[str, Any], action: str) -> list[str]:
    """Object prefixes (or "*") a role may use ``action`` on; bucket-level statements are skipped."""
    prefixes = []
    for statement in policy_statements(role):
        if action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
                if text.startswith("${DocumentBucket.Arn}/"):
                    prefixes.append(text.split("/")[1])
    return prefixes


def dynamodb_actions(role: dict[str, Any]) -> set[str]:
    return {action for statement in policy_statements(role) for action in as_list(statement["Action"])
            if action.startswith("dynamodb:")}


def test_roles_reach_only_their_own_prefixes_tables_and_secrets(template: dict[str, Any]) -> None:
    roles = template["Resources"]
    worker = roles["RayWorkerTaskRole"]
    assert set(allowed(worker, "s3:PutObject")) == OUTPUT_PREFIXES
    assert allowed(worker, "s3:GetObject") == ["input", *sorted(OUTPUT_PREFIXES, key=["extracted", "chunks", "enriched", "embeddings"].index)]
    assert dynamodb_actions(worker) == set(), "the stages write no status: the run workers do"
    # The run workers (on the head) write status, read outputs for the checks, and delete outputs: remove_documents
    # runs (PDFs deleted from the inbox) and superseded versions. They are the role that deletes.
    head = roles["RayHeadTaskRole"]
    assert set(allowed(head, "s3:DeleteObject")) == OUTPUT_PREFIXES and allowed(head, "s3:PutObject") == []
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem"} <= dynamodb_actions(head)
    assert roles["RayHeadTask"]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["RayHeadTaskRole", "Arn"]}
    # The daemon's sensor lists the inbox and registers (or marks deleted) versions; it reads and deletes nothing.
    daemon = roles["DagsterDaemonTaskRole"]
    assert [action for statement in policy_statements(daemon) for action in as_list(statement["Action"])
            if action.startswith("s3:")] == ["s3:ListBucket"]
    assert policy_statements(daemon)[0]["Condition"] == {"StringLike": {"s3:prefix": ["input/*"]}}
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem"} <= dynamodb_actions(daemon)
    # The webserver reads no object at all (extracted/ and chunks/ hold raw, unredacted text) and writes nothing.
    webserver = roles["DagsterWebserverTaskRole"]
    assert allowed(webserver, "s3:GetObject") == [] and not any(
        action.startswith("s3:") for statement in policy_statements(webserver) for action in as_list(statement["Action"]))
    assert dynamodb_actions(webserver) <= {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"}
    for name in ("RayWorkerTaskRole", "RayHeadTaskRole", "DagsterDaemonTaskRole"):
        listing = [s for s in policy_statements(roles[name]) if s["Action"] == "s3:ListBucket"]
        assert listing and all("Condition" in s for s in listing), name
    head_secrets = [s for s in policy_statements(roles["RayHeadExecutionRole"]) if s["Action"] == "secretsmanager:GetSecretValue"]
    assert {"Ref": "RayTokenSecret"} in head_secrets[0]["Resource"] and {"Ref": "DatabaseSecret"} in head_secrets[0]["Resource"]
    daemon_secrets = [s for s in policy_statements(roles["DagsterDaemonExecutionRole"]) if s["Action"] == "secretsmanager:GetSecretValue"]
    assert daemon_secrets[0]["Resource"] == [{"Ref": "DatabaseSecret"}, {"Ref": "RayTokenSecret"}]


def test_bucket_is_encrypted_versioned_private_with_lifecycle_per_prefix(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DocumentBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    days = {rule["Prefix"]: rule["ExpirationInDays"] for rule in bucket["LifecycleConfiguration"]["Rules"] if "Prefix" in rule}
    assert days == {"input/": 180, "extracted/": 7, "chunks/": 7, "enriched/": 30, "embeddings/": 90}
    raw_text = [rule for rule in bucket["LifecycleConfiguration"]["Rules"] if rule.get("Prefix") in ("extracted/", "chunks/")]
    assert all(rule["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 7 for rule in raw_text)
    policy = template["Resources"]["DocumentBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Effect"] == "Deny" and policy["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_tables_are_on_demand_with_pitr_and_ttl_on_audit(template: dict[str, Any]) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    names = {body["Properties"]["TableName"]["Fn::Sub"] for body in tables.values()}
    assert names == {"${ProjectName}-control", "${ProjectName}-audit", "${ProjectName}-metrics"}
    for body in tables.values():
        assert body["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
        assert body["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    keys = {name: [key["AttributeName"] for key in body["Properties"]["KeySchema"]] for name, body in tables.items()}
    assert keys == {"ControlTable": ["document_id", "processing_version"], "AuditTable": ["document_id", "event_id"],
                    "MetricsTable": ["day"]}
    assert tables["AuditTable"]["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_database_is_small_encrypted_private_with_a_generated_password(template: dict[str, Any]) -> None:
    database = template["Resources"]["Database"]["Properties"]
    assert template["Parameters"]["DatabaseInstanceClass"]["Default"] == "db.t4g.micro"
    assert database["StorageEncrypted"] is True and database["PubliclyAccessible"] is False
    assert "GenerateSecretString" in template["Resources"]["DatabaseSecret"]["Properties"]


def test_alarms_cover_head_workers_capacity_and_failures_and_mail_the_topic(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {"RayHeadDownAlarm", "NoWorkersAlarm", "WorkersAtMaxAlarm", "DocumentsFailingAlarm"}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert template["Resources"]["WorkersAtMaxAlarm"]["Properties"]["Threshold"] == {"Ref": "MaxWorkers"}
    subscription = template["Resources"]["AlertTopic"]["Properties"]["Subscription"]
    assert subscription == [{"Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}]
    metric = template["Resources"]["FailedRunsMetric"]["Properties"]["MetricTransformations"][0]
    assert metric["MetricName"] == template["Resources"]["DocumentsFailingAlarm"]["Properties"]["MetricName"]


def test_log_groups_keep_logs_for_the_retention_parameter(template: dict[str, Any]) -> None:
    groups = resources_of(template, "AWS::Logs::LogGroup")
    assert len(groups) == 4
    assert all(body["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for body in groups.values())


def test_cluster_has_container_insights_and_gateway_endpoints(template: dict[str, Any]) -> None:
    settings = template["Resources"]["Cluster"]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings
    endpoints = resources_of(template, "AWS::EC2::VPCEndpoint")
    services = {body["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1] for body in endpoints.values()}
    assert services == {"s3", "dynamodb"}
    assert all(body["Properties"]["VpcEndpointType"] == "Gateway" for body in endpoints.values())


def test_outputs_name_cluster_services_bucket_tables_and_urls(template: dict[str, Any]) -> None:
    assert {"ClusterName", "RayHeadServiceName", "RayWorkerServiceName", "DagsterWebserverServiceName",
            "DagsterDaemonServiceName", "BucketName", "ControlTableName", "AuditTableName", "MetricsTableName",
            "DagsterUrl", "RayDashboardUrl", "LoadBalancerDnsName", "UserPoolId"} <= set(template["Outputs"])


def test_private_subnets_are_a_parameter_with_public_the_default(template: dict[str, Any]) -> None:
    assert template["Parameters"]["UsePrivateSubnets"]["Default"] == "false"
    nat = template["Resources"]["NatGateway"]
    assert nat["Condition"] == "PrivateSubnets"
