#!/usr/bin/env bash
# Checks the deploy/ files without a Docker engine: the compose file with
# docker-compose's offline `config`, the nginx site with `nginx -t` on a
# self-signed test certificate, the dashboard and alert rules of
# deploy/monitoring (scripts/check-monitoring.py). Called by scripts/test.sh.
set -euo pipefail
source "$(dirname "$0")/lib/services.sh"
cd "$PARLEY_ROOT"
command -v docker-compose >/dev/null || ensure_debs docker-compose
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ensure_debs nginx
command -v envsubst >/dev/null || ensure_debs gettext-base
command -v openssl >/dev/null || ensure_debs openssl
command -v curl >/dev/null || ensure_debs curl

/usr/bin/python3 -c 'import yaml' 2>/dev/null || ensure_debs python3-yaml
/usr/bin/python3 scripts/check-monitoring.py "$PARLEY_ROOT"
# docs/scaling.md: the sizing script still runs on its defaults.
/usr/bin/python3 scripts/scaling.py >/dev/null

d=$(mktemp -d /tmp/parley-deploy.XXXXXX)
trap 'rm -rf "$d"' EXIT

# Kubernetes manifests: schema-checked offline for a pinned version with
# kubernetes-validate (PyPI, installed once into a cache of its own); the
# configuration file in the ConfigMap must load in Parley itself.
K8S_VERSION=1.30.0
kv_path="${XDG_CACHE_HOME:-$HOME/.cache}/parley/kubernetes-validate"
if ! PYTHONPATH="$kv_path" python3 -c 'import kubernetes_validate' 2>/dev/null; then
    log "installing kubernetes-validate (PyPI) into $kv_path"
    python3 -m pip install -q --disable-pip-version-check --target "$kv_path" "kubernetes-validate==1.37.0"
fi
manifests=$(ls deploy/k8s/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
PYTHONPATH="$kv_path" python3 -m kubernetes_validate --strict -k "$K8S_VERSION" $manifests
/usr/bin/python3 - "$d/k8s-parley.toml" <<'PY'
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/configmap.yaml"))
open(sys.argv[1], "w").write(cm["data"]["parley.toml"])
for r in yaml.safe_load(open("deploy/k8s/kustomization.yaml"))["resources"]:
    open("deploy/k8s/" + r).close()
PY
parley_bin="${PARLEY_BIN:-${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/debug/parley}"
if [ -x "$parley_bin" ]; then
    PARLEY_DATABASE__URL=postgres://check@127.0.0.1/none "$parley_bin" --config "$d/k8s-parley.toml" config >/dev/null
fi
log "deploy/k8s: valid for Kubernetes $K8S_VERSION"
docker-compose -f deploy/docker-compose.yml config -q
log "deploy/docker-compose.yml: valid"

mkdir -p "$d/conf.d"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null
# nginx -t resolves upstream names: point the compose names at loopback.
PARLEY_SERVER_NAME=localhost PARLEY_TLS_CERT="$d/cert.pem" PARLEY_TLS_KEY="$d/key.pem" \
    PARLEY_MAX_BODY_SIZE=100m \
    envsubst '${PARLEY_SERVER_NAME} ${PARLEY_TLS_CERT} ${PARLEY_TLS_KEY} ${PARLEY_MAX_BODY_SIZE}' \
    <deploy/nginx/templates/parley.conf.template \
    | sed -E 's/server parley[0-9]+:8080/server 127.0.0.1:8080/' >"$d/conf.d/parley.conf"
cat >"$d/nginx.conf" <<CONF
pid $d/nginx.pid;
error_log $d/error.log;
events {}
http { include $d/conf.d/*.conf; }
CONF
"$(command -v nginx || echo /usr/sbin/nginx)" -t -q -p "$d" -c "$d/nginx.conf"
log "deploy/nginx/templates/parley.conf.template: nginx -t passed"
# The files site (MinIO for browsers), alone in a configuration of its own.
mkdir -p "$d/files.d"
PARLEY_FILES_SERVER_NAME=files.localhost PARLEY_TLS_CERT="$d/cert.pem" PARLEY_TLS_KEY="$d/key.pem" \
    PARLEY_MAX_BODY_SIZE=100m \
    envsubst '${PARLEY_FILES_SERVER_NAME} ${PARLEY_TLS_CERT} ${PARLEY_TLS_KEY} ${PARLEY_MAX_BODY_SIZE}' \
    <deploy/nginx/templates/files.conf.template \
    | sed -E 's/server minio:9000/server 127.0.0.1:9000/' >"$d/files.d/files.conf"
grep -q 'proxy_set_header Host $http_host;' "$d/files.d/files.conf" \
    || die "files.conf.template must pass the Host presigned URLs were signed for"
cat >"$d/nginx-files.conf" <<CONF
pid $d/nginx-files.pid;
error_log $d/error-files.log;
events {}
http { include $d/files.d/*.conf; }
CONF
"$(command -v nginx || echo /usr/sbin/nginx)" -t -q -p "$d" -c "$d/nginx-files.conf"
log "deploy/nginx/templates/files.conf.template: nginx -t passed"
# compose: files on S3 with the public name for presigned URLs, the bucket
# made before the nodes start, and a healthcheck on every long-lived service.
/usr/bin/python3 - <<'PY'
import yaml
c = yaml.safe_load(open("deploy/docker-compose.yml"))
svc = c["services"]
env = svc["parley1"]["environment"]
assert env["PARLEY_FILES__BACKEND"] == "s3", env
assert env["PARLEY_FILES__S3_PUBLIC_ENDPOINT"].startswith("https://"), env
for name in ("postgres", "redis", "minio", "parley1", "parley2"):
    assert "healthcheck" in svc[name], name + " has no healthcheck"
assert svc["parley1"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
assert "mc mb" in " ".join(svc["minio-init"]["entrypoint"])
PY
log "deploy/docker-compose.yml: files on S3, bucket created first, healthchecks"

# The access log must hold paths without query strings (tickets and signed
# links travel there): serve the site for real on loopback and look.
port=$(free_port)
sed -E -e "s#listen 443 ssl http2;#listen 127.0.0.1:$port ssl;#" \
    -e '/listen \[::\]:443/d; /listen 80;/d; /listen \[::\]:80;/d' \
    -e "s#/var/log/nginx/parley.access.log#$d/access.log#" \
    "$d/conf.d/parley.conf" >"$d/conf.d/parley.conf.new"
mv "$d/conf.d/parley.conf.new" "$d/conf.d/parley.conf"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
"$nginx_bin" -q -p "$d" -c "$d/nginx.conf" -g 'daemon on;'
curl -ks -o /dev/null "https://127.0.0.1:$port/ws?ticket=pwt_SECRET_TICKET" || true
curl -ks -o /dev/null "https://127.0.0.1:$port/v1/files/x/content?link=SECRET_LINK" || true
curl -ks -o /dev/null -X POST "https://127.0.0.1:$port/v1/hooks/phk_SECRET_HOOK" || true
kill "$(cat "$d/nginx.pid")" 2>/dev/null || true
for _ in $(seq 50); do [ -e "$d/nginx.pid" ] || break; sleep 0.1; done
grep -q ' /ws ' "$d/access.log" || { cat "$d/access.log"; die "the access log lacks the request"; }
if grep -q SECRET "$d/access.log"; then
    cat "$d/access.log"
    die "the nginx access log records query strings or webhook tokens"
fi
grep -q ' /v1/hooks/- ' "$d/access.log" || { cat "$d/access.log"; die "the access log lacks the webhook request"; }
log "deploy/nginx/templates/parley.conf.template: access log without query strings or webhook tokens"
