#!/usr/bin/env bash
# One-command deploy: build both images, push them tagged with the git SHA, apply with that tag.
#
#   infra/deploy.sh deploy    # make deploy   (ENV=dev by default: environments/$ENV.tfvars)
#   infra/deploy.sh plan      # what deploy would change, without building
#   infra/deploy.sh destroy   # make destroy
#
# Builds with docker (a running daemon), else podman, else buildah. With backend.tf (copied from
# backend.tf.example) and environments/$ENV.s3.tfbackend, the state lives in S3.
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

case "$ACTION" in
    deploy | plan | destroy) ;;
    *) die "usage: infra/deploy.sh deploy|plan|destroy (ENV=$ENV_NAME)" ;;
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

BUILDER=""
if [[ "$ACTION" == deploy ]]; then
    BUILDER=$(builder)
    [[ -n "$BUILDER" ]] || die "no image builder: install docker (with its daemon running), podman or buildah"
fi
for tool in terraform git; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

# The tag names the commit the images are built from: a dirty tree would make it lie.
TAG=$(git -C "$ROOT" rev-parse --short=12 HEAD)
if [[ "$ACTION" == deploy && -n "$(git -C "$ROOT" status --porcelain)" && -z "${ALLOW_DIRTY:-}" ]]; then
    die "uncommitted changes: commit them first (the image tag is the commit), or set ALLOW_DIRTY=1"
fi

tf() {
    terraform -chdir="$TF_DIR" "$@"
}

init_args=(-input=false)
if [[ -f "$TF_DIR/backend.tf" ]]; then
    backend="$TF_DIR/environments/$ENV_NAME.s3.tfbackend"
    [[ -f "$backend" ]] || die "backend.tf is there but environments/$ENV_NAME.s3.tfbackend is not"
    init_args+=(-reconfigure "-backend-config=$backend")
fi
tf init "${init_args[@]}" >/dev/null
VAR_ARGS=(-input=false "-var-file=$VARS" "-var=image_tag=$TAG")

case "$ACTION" in
    plan)
        tf plan "${VAR_ARGS[@]}"
        exit 0
        ;;
    destroy)
        tf destroy "${VAR_ARGS[@]}" ${AUTO_APPROVE:+-auto-approve}
        exit 0
        ;;
esac

command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not on PATH: it logs the builder in to ECR"

# The repositories must exist before anything can be pushed to them; the first deploy of an
# environment creates them alone, every later one finds them in the state.
if ! tf state list 'aws_ecr_repository.this' 2>/dev/null | grep -q .; then
    tf apply "${VAR_ARGS[@]}" -target=aws_ecr_repository.this -auto-approve
fi
REPOS=$(tf output -json ecr_repository_urls)
repo_url() {
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$REPOS" "$1"
}
API_REPO=$(repo_url order-api)
WORKER_REPO=$(repo_url order-processor)
REGISTRY=${API_REPO%%/*}
REGION=$(python3 -c 'import sys; print(sys.argv[1].split(".")[3])' "$REGISTRY")

aws ecr get-login-password --region "$REGION" |
    "$BUILDER" login --username AWS --password-stdin "$REGISTRY"

# Fargate runs linux/amd64 (runtime_platform in ecs.tf), whatever this machine is.
for image in "api:$API_REPO" "worker:$WORKER_REPO"; do
    name=${image%%:*}
    repo=${image#*:}
    # Tags are immutable: a commit already pushed is not built twice.
    if aws ecr describe-images --region "$REGION" --repository-name "${repo#*/}" \
        --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
        echo "deploy: $repo:$TAG is already pushed"
        continue
    fi
    case "$BUILDER" in
        buildah) buildah build --platform linux/amd64 -f "$ROOT/Dockerfile.$name" -t "$repo:$TAG" "$ROOT" ;;
        *) "$BUILDER" build --platform linux/amd64 -f "$ROOT/Dockerfile.$name" -t "$repo:$TAG" "$ROOT" ;;
    esac
    "$BUILDER" push "$repo:$TAG"
done

tf apply "${VAR_ARGS[@]}" ${AUTO_APPROVE:+-auto-approve}
echo "deploy: $ENV_NAME runs $TAG at $(tf output -raw alb_url)"
