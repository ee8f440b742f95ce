#!/usr/bin/env bash
# Re-pin the Kubernetes wrapper module to another release:
#   tools/kube/k8s/update.sh v1.37.2
# Rewrites go.mod (require k8s.io/kubernetes + one replace per staging module
# listed in that release's own go.mod, pointing at the matching v0.Y.Z) and
# runs go mod tidy. Staging modules that the proxy does not serve (sample-*)
# are skipped: they are not in the build graph.
set -euo pipefail
ver="${1:?usage: $0 v1.Y.Z}"
cd "$(dirname "${BASH_SOURCE[0]}")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
dir="$(go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
staging="v0.${ver#v1.}"
{
  echo "// Pinned wrapper module: builds kube-apiserver, kube-controller-manager and"
  echo "// kube-scheduler from k8s.io/kubernetes. The replace block mirrors the staging"
  echo "// replace list of k8s.io/kubernetes' own go.mod (staging modules v0.Y.Z)."
  echo "// Regenerate with: tools/kube/k8s/update.sh v1.Y.Z"
  echo "module cni-migrate/tools/kube/k8s"
  echo
  echo "go $(sed -n 's/^go //p' "$dir/go.mod")"
  echo
  sed -n '/^godebug/p' "$dir/go.mod"
  echo
  echo "require k8s.io/kubernetes $ver"
  echo
  echo "replace ("
  sed -n 's#^\t\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$dir/go.mod" | while read -r m; do
    if go list -m "$m@$staging" >/dev/null 2>&1; then
      printf '\t%s => %s %s\n' "$m" "$m" "$staging"
    else
      echo "update.sh: skipping $m (no $staging on the proxy)" >&2
    fi
  done
  echo ")"
} > go.mod.new
mv go.mod.new go.mod
go mod tidy
echo "update.sh: pinned k8s.io/kubernetes $ver; now run tools/kube/build" >&2
