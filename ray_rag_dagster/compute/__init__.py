"""The one seam between the pipeline and Ray: the shared cluster, warm stage workers, and the flow that
streams documents through the stages on them. No Dagster import here: the Dagster assets, the CLI and the
benchmarks all drive stages through :func:`ray_rag_dagster.compute.flow.run_stages`."""
