"""Deploy the pipeline to AWS: the CloudFormation stack in ``infra_cfn/`` and the ``ray-rag aws`` commands.

Every boto3 client is built from :class:`~ray_rag_dagster.settings.Settings` (``aws_region`` and
``aws_endpoint_url``), so the same commands run against AWS or against a local stand-in such as moto's server.
"""
