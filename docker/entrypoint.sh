#!/bin/sh
# One image, four roles: the first argument names the role, the rest go to its program.
#   ray-head [ray start flags]    the head: GCS, dashboard + Jobs API; the stack passes --num-cpus=0 (no stage
#                                 runs there) and --resources={"dagster_run": N} (the Dagster run workers' slots)
#   ray-worker [ray start flags]  a worker joining $RAY_HEAD_ADDRESS (ray-head.<namespace>:6379)
#   dagster-webserver | dagster-daemon    Dagster with the project's code location
#   health                        the container health check of whichever role runs as PID 1
# Anything else runs as a command (e.g. `ray-rag status`).
set -eu

# Docling's own models are in the image only when it was built with DOCLING_MODELS=true.
if [ -f /opt/docling-models/.baked ]; then
    export RAY_RAG_DOCLING_ARTIFACTS_PATH="${RAY_RAG_DOCLING_ARTIFACTS_PATH:-/opt/docling-models}"
elif [ "${RAY_RAG_EXTRACT_ENGINE:-offline}" = "docling" ] && [ -z "${RAY_RAG_DOCLING_ARTIFACTS_PATH:-}" ]; then
    echo "RAY_RAG_EXTRACT_ENGINE=docling needs an image built with --build-arg DOCLING_MODELS=true" >&2
    exit 2
fi

role="${1:-ray-worker}"
[ "$#" -gt 0 ] && shift

# Every port a Ray node listens on, pinned so the stack's security groups open exactly these
# (infra_cfn/template.yaml): GCS 6379 (head); node manager, object manager, runtime-env agent, dashboard agent
# gRPC 6380-6383; dashboard agent HTTP 52365; metrics 6384 (not opened); worker processes 10002-10999.
RAY_NODE_PORTS="--node-manager-port=6380 --object-manager-port=6381 --runtime-env-agent-port=6382 \
--dashboard-agent-grpc-port=6383 --dashboard-agent-listen-port=52365 --metrics-export-port=6384 \
--min-worker-port=10002 --max-worker-port=10999"

case "$role" in
    ray-head)
        # The dashboard serves the Jobs API (8265) through which Dagster submits each run as a Ray job;
        # --include-dashboard=true fails the start if it cannot run. Nothing uses the Ray Client (ray://): its
        # port is left closed by the security groups.
        # shellcheck disable=SC2086
        exec ray start --head --block --disable-usage-stats --port=6379 $RAY_NODE_PORTS \
            --include-dashboard=true --dashboard-host=0.0.0.0 --dashboard-port=8265 "$@"
        ;;
    ray-worker)
        # shellcheck disable=SC2086
        exec ray start --block --disable-usage-stats $RAY_NODE_PORTS \
            --address="${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to ray-head.<namespace>:6379}" "$@"
        ;;
    dagster-webserver)
        exec dagster-webserver --host 0.0.0.0 --port 3000 --module-name ray_rag_dagster.defs "$@"
        ;;
    dagster-daemon)
        exec dagster-daemon run --module-name ray_rag_dagster.defs "$@"
        ;;
    health)
        main_process="$(tr '\0' ' ' < /proc/1/cmdline)"
        case "$main_process" in
            *dagster-webserver*)
                exec python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"
                ;;
            *dagster-daemon*)
                exec dagster-daemon liveness-check
                ;;
            *--head*)
                exec ray health-check --address=127.0.0.1:6379
                ;;
            *)
                # `ray start --block` exits as soon as one of the node's Ray processes dies.
                exit 0
                ;;
        esac
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
