#!/usr/bin/env bash
# One-command deploy: build both images, push them tagged with the git SHA, apply with that tag,
# then wait until ECS runs the new task definitions and the URL answers.
#
#   infra/deploy.sh deploy              # make deploy   (ENV=dev by default: environments/$ENV.tfvars)
#   TAG=<tag> infra/deploy.sh deploy    # redeploy images already pushed (a rollback): no build
#   infra/deploy.sh plan                # what deploy would change, without building
#   infra/deploy.sh destroy             # make destroy
# The same in reviewed steps (the CI example): push, a saved plan, its apply after an approval:
#   infra/deploy.sh push                # build and push both images at the git SHA, nothing else
#   PLAN_OUT=f infra/deploy.sh plan     # the plan for that tag, saved to f
#   infra/deploy.sh apply f             # apply exactly f, then watch the rollout as deploy does
#
# Builds with docker (a running daemon), else podman, else buildah. With backend.tf (copied from
# backend.tf.example) and environments/$ENV.s3.tfbackend, the state lives in S3; CI passes the
# backend settings as TF_BACKEND_CONFIG (key=value pairs separated by spaces) instead of a file.
set -euo pipefail

die() {
    echo "deploy: $*" >&2
    exit 1
}

ROOT=$(cd "${BASH_SOURCE[0]%/*}/.." && pwd)
TF_DIR="$ROOT/infra/terraform"
ENV_NAME=${ENV:-dev}
VARS="$TF_DIR/environments/$ENV_NAME.tfvars"
ACTION=${1:-}
# How long to wait for both services to be stable, then for the URL to answer; how often to ask.
ROLLOUT_TIMEOUT=${DEPLOY_TIMEOUT_SECONDS:-1800}
POLL=${DEPLOY_POLL_SECONDS:-15}

case "$ACTION" in
    deploy | push | plan | destroy) ;;
    apply)
        [[ -f "${2:-}" ]] || die "usage: infra/deploy.sh apply <a plan saved by PLAN_OUT=<file> infra/deploy.sh plan>"
        # Absolute: terraform -chdir resolves relative paths from infra/terraform.
        PLAN_FILE=$2
        [[ "$PLAN_FILE" == /* ]] || PLAN_FILE="$PWD/$PLAN_FILE"
        ;;
    *) die "usage: infra/deploy.sh deploy|push|plan|apply|destroy (ENV=$ENV_NAME)" ;;
esac
[[ -f "$VARS" ]] || die "ENV=$ENV_NAME has no infra/terraform/environments/$ENV_NAME.tfvars"

# Which tool builds and pushes: the first that can work here.
builder() {
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    elif command -v podman >/dev/null 2>&1; then
        echo podman
    elif command -v buildah >/dev/null 2>&1; then
        echo buildah
    fi
}

# TAG given: images already in ECR are redeployed as they are, so nothing is built.
REDEPLOY=${TAG:+1}
BUILDER=""
if [[ ("$ACTION" == deploy && -z "$REDEPLOY") || "$ACTION" == push ]]; then
    BUILDER=$(builder)
    [[ -n "$BUILDER" ]] || die "no image builder: install docker (with its daemon running), podman or buildah"
fi
for tool in terraform git; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

# The tag names the commit the images are built from: a dirty tree would make it lie.
if [[ -z "$REDEPLOY" ]]; then
    TAG=$(git -C "$ROOT" rev-parse --short=12 HEAD)
    if [[ "$ACTION" =~ ^(deploy|push)$ && -n "$(git -C "$ROOT" status --porcelain)" && -z "${ALLOW_DIRTY:-}" ]]; then
        die "uncommitted changes: commit them first (the image tag is the commit), or set ALLOW_DIRTY=1"
    fi
fi

tf() {
    terraform -chdir="$TF_DIR" "$@"
}

# The committed .terraform.lock.hcl is the provider the tests ran: init may not change it.
init_args=(-input=false -lockfile=readonly)
if [[ -f "$TF_DIR/backend.tf" ]]; then
    init_args+=(-reconfigure)
    if [[ -n "${TF_BACKEND_CONFIG:-}" ]]; then
        read -ra pairs <<<"$TF_BACKEND_CONFIG"
        for pair in "${pairs[@]}"; do
            init_args+=("-backend-config=$pair")
        done
    else
        backend="$TF_DIR/environments/$ENV_NAME.s3.tfbackend"
        [[ -f "$backend" ]] || die "backend.tf is there but neither environments/$ENV_NAME.s3.tfbackend nor TF_BACKEND_CONFIG is"
        init_args+=("-backend-config=$backend")
    fi
fi
tf init "${init_args[@]}" >/dev/null
VAR_ARGS=(-input=false "-var-file=$VARS" "-var=image_tag=$TAG")

case "$ACTION" in
    plan)
        if [[ -n "${PLAN_OUT:-}" && "$PLAN_OUT" != /* ]]; then
            PLAN_OUT="$PWD/$PLAN_OUT"
        fi
        tf plan "${VAR_ARGS[@]}" ${PLAN_OUT:+"-out=$PLAN_OUT"}
        exit 0
        ;;
    destroy)
        tf destroy "${VAR_ARGS[@]}" ${AUTO_APPROVE:+-auto-approve}
        exit 0
        ;;
esac

command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not on PATH: it logs the builder in to ECR and reads the services"
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH: it reads the JSON terraform and aws print"

# The region and registry, from the repositories' URLs (which the state holds once they exist).
read_registry() {
    REPOS=$(tf output -json ecr_repository_urls)
    API_REPO=$(repo_url order-api)
    WORKER_REPO=$(repo_url order-processor)
    REGISTRY=${API_REPO%%/*}
    REGION=$(python3 -c 'import sys; print(sys.argv[1].split(".")[3])' "$REGISTRY")
}
repo_url() {
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$REPOS" "$1"
}
pushed() {
    aws ecr describe-images --region "$REGION" --repository-name "${1#*/}" \
        --image-ids "imageTag=$TAG" >/dev/null 2>&1
}

push_images() {
    aws ecr get-login-password --region "$REGION" |
        "$BUILDER" login --username AWS --password-stdin "$REGISTRY"
    for name in api worker; do
        grep -q '^ARG PYTHON_IMAGE=.*@sha256:' "$ROOT/Dockerfile.$name" ||
            echo "deploy: Dockerfile.$name pulls its base image by tag, not digest (make pin-images pins it where a registry is reachable)"
    done
    # Fargate runs linux/amd64 (runtime_platform in ecs.tf), whatever this machine is.
    for image in "api:$API_REPO" "worker:$WORKER_REPO"; do
        name=${image%%:*}
        repo=${image#*:}
        # Tags are immutable: a commit already pushed is not built twice.
        if pushed "$repo"; then
            echo "deploy: $repo:$TAG is already pushed"
            continue
        fi
        case "$BUILDER" in
            buildah) buildah build --platform linux/amd64 -f "$ROOT/Dockerfile.$name" -t "$repo:$TAG" "$ROOT" ;;
            *) "$BUILDER" build --platform linux/amd64 -f "$ROOT/Dockerfile.$name" -t "$repo:$TAG" "$ROOT" ;;
        esac
        "$BUILDER" push "$repo:$TAG"
    done
}

if [[ "$ACTION" == apply ]]; then
    # A saved plan carries its variables and its tag: applied as it is, with no prompt.
    TAG=$(tf show -json "$PLAN_FILE" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["variables"]["image_tag"]["value"])')
    tf apply -input=false "$PLAN_FILE"
    read_registry
else
    # The repositories must exist before anything can be pushed to them; the first deploy of an
    # environment creates them alone, every later one finds them in the state.
    if ! tf state list 'aws_ecr_repository.this' 2>/dev/null | grep -q .; then
        tf apply "${VAR_ARGS[@]}" -target=aws_ecr_repository.this -auto-approve
    fi
    read_registry
    if [[ -n "$REDEPLOY" ]]; then
        for repo in "$API_REPO" "$WORKER_REPO"; do
            pushed "$repo" || die "TAG=$TAG is not in $repo: only a tag already pushed can be redeployed"
        done
        echo "deploy: redeploying $TAG, already pushed (nothing built)"
    else
        push_images
    fi
    if [[ "$ACTION" == push ]]; then
        echo "deploy: both images are in ECR at $TAG"
        exit 0
    fi
    tf apply "${VAR_ARGS[@]}" ${AUTO_APPROVE:+-auto-approve}
fi

# --- watch the rollout -------------------------------------------------------------------------
# `aws ecs wait services-stable` would return 0 after a circuit-breaker rollback too (the
# service is stable again, on the old task definition): infra/rollout.py reads the deployments.
CLUSTER=$(tf output -raw cluster_name)
SERVICES=$(tf output -json services)
read -ra SERVICE_NAMES < <(python3 -c \
    'import json, sys; print(" ".join(s["name"] for s in json.loads(sys.argv[1]).values()))' "$SERVICES")

deadline=$((SECONDS + ROLLOUT_TIMEOUT))
echo "deploy: waiting for ${SERVICE_NAMES[*]} to run the new task definitions"
while :; do
    described=$(aws ecs describe-services --region "$REGION" --cluster "$CLUSTER" \
        --services "${SERVICE_NAMES[@]}" --output json)
    status=0
    report=$(python3 "$ROOT/infra/rollout.py" "$SERVICES" "$described") || status=$?
    case "$status" in
        0) break ;;
        3) ;;
        4)
            echo "$report" >&2
            exit 1
            ;;
        *) die "could not read the services' deployments (exit $status): $report" ;;
    esac
    ((SECONDS < deadline)) || die "not stable after ${ROLLOUT_TIMEOUT} s: $report"
    echo "deploy: $report"
    sleep "$POLL"
done

# The URL comes from the listener: https when a certificate is configured, at domain_name when
# one is; deploy.sh asks it /health until it answers (DNS and the ALB's targets may lag).
URL=$(tf output -raw alb_url)
ANSWERS='
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:
    print(error)
    sys.exit(1)
'
while ! why=$(python3 -c "$ANSWERS" "$URL"); do
    ((SECONDS < deadline)) || die "both services are stable but $URL/health does not answer: $why"
    sleep "$POLL"
done
echo "deploy: $ENV_NAME runs $TAG at $URL"
