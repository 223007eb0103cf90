"""The template says what the issue asks: admin-only UIs, Spot workers with bounds, secrets as ECS secrets,
scoped IAM, protected storage, alarms, outputs. Read through the same loader the deploy commands use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ray_rag_dagster.aws.template import DEFAULT_TEMPLATE, MAX_INLINE_TEMPLATE_BYTES, load_template, template_body
from tests.infra.moto_template import references

RAY_DASHBOARD_PORT = 8265
DAGSTER_UI_PORTS = (80, 3000)


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
        assert (rule["FromPort"], rule["ToPort"]) in ((80, 80), (RAY_DASHBOARD_PORT, RAY_DASHBOARD_PORT)), rule
    # The tasks' UI ports open only to the load balancer's group, which admits AdminCidr only.
    for group, rule in rules:
        if group == "ClusterSecurityGroup" and rule["SourceSecurityGroupId"] != {"Ref": "ClusterSecurityGroup"}:
            assert rule["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"}
            assert rule["FromPort"] in (RAY_DASHBOARD_PORT, *DAGSTER_UI_PORTS) and rule["FromPort"] == rule["ToPort"]
    assert template["Parameters"]["AdminCidr"].get("Default") is None, "no default: the user names their network"


def test_ray_ports_open_only_inside_the_cluster_group(template: dict[str, Any]) -> None:
    for port in (6379, 10001, 20000):  # GCS, client server, a worker port
        sources = [rule.get("SourceSecurityGroupId") or rule.get("CidrIp")
                   for group, rule in ingress_rules(template) if group == "ClusterSecurityGroup" and covers(rule, port)]
        assert sources == [{"Ref": "ClusterSecurityGroup"}], (port, sources)
    database = template["Resources"]["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [rule["SourceSecurityGroupId"] for rule in database] == [{"Ref": "ClusterSecurityGroup"}]


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
    registries = template["Resources"]["RayHeadService"]["Properties"]["ServiceRegistries"]
    assert registries == [{"RegistryArn": {"Fn::GetAtt": ["RayHeadDiscovery", "Arn"]}}]
    assert template["Resources"]["RayHeadDiscovery"]["Properties"]["Name"] == "ray-head"
    worker_env = {item["Name"]: item["Value"] for item in
                  template["Resources"]["RayWorkerTask"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert worker_env["RAY_HEAD_ADDRESS"] == {"Fn::Sub": "ray-head.${ProjectName}.internal:6379"}
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
    assert {"DAGSTER_PG_PASSWORD", "RAY_RAG_OPENAI_API_KEY", "RAY_AUTH_TOKEN"} <= seen["DagsterDaemonTask"]
    assert seen["RayHeadTask"] == {"RAY_AUTH_TOKEN"}
    assert "RAY_RAG_OPENAI_API_KEY" not in seen["DagsterWebserverTask"]


def policy_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [statement for policy in role["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_role_is_scoped_to_its_own_resources(template: dict[str, Any]) -> None:
    roles = resources_of(template, "AWS::IAM::Role")
    assert len(roles) == 7, "one execution role per task kind, one task role per kind that calls AWS"
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


def test_roles_reach_only_their_own_prefixes_tables_and_secrets(template: dict[str, Any]) -> None:
    roles = template["Resources"]
    worker = policy_statements(roles["RayWorkerTaskRole"])
    writes = next(s for s in worker if "s3:PutObject" in s["Action"])
    assert {r["Fn::Sub"].split("/")[1] for r in writes["Resource"]} == {"extracted", "chunks", "enriched", "embeddings"}
    reads = [s for s in worker if s["Action"] == "s3:GetObject"]
    assert reads[0]["Resource"] == {"Fn::Sub": "${DocumentBucket.Arn}/input/*"}
    webserver = policy_statements(roles["DagsterWebserverTaskRole"])
    assert not any(action.startswith(("s3:Put", "s3:Delete", "dynamodb:Put", "dynamodb:Update"))
                   for statement in webserver for action in as_list(statement["Action"]))
    head_secrets = [s for s in policy_statements(roles["RayHeadExecutionRole"]) if s["Action"] == "secretsmanager:GetSecretValue"]
    assert head_secrets[0]["Resource"] == [{"Ref": "RayTokenSecret"}]
    assert "TaskRoleArn" not in roles["RayHeadTask"]["Properties"], "the head calls no AWS API"


def test_bucket_is_encrypted_versioned_private_with_lifecycle_per_prefix(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DocumentBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    days = {rule["Prefix"]: rule["ExpirationInDays"] for rule in bucket["LifecycleConfiguration"]["Rules"] if "Prefix" in rule}
    assert days == {"input/": 180, "extracted/": 30, "chunks/": 30, "enriched/": 30, "embeddings/": 90}
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
            "DagsterUrl", "RayDashboardUrl"} <= set(template["Outputs"])
    assert template["Outputs"]["RayDashboardUrl"]["Value"] == {"Fn::Sub": "http://${LoadBalancer.DNSName}:8265"}


def test_private_subnets_are_a_parameter_with_public_the_default(template: dict[str, Any]) -> None:
    assert template["Parameters"]["UsePrivateSubnets"]["Default"] == "false"
    nat = template["Resources"]["NatGateway"]
    assert nat["Condition"] == "PrivateSubnets"
