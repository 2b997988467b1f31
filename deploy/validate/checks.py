"""Checks of the deployment files that need more than a schema, run by deploy/validate.sh.

  checks.py kube [--kube-version V]... [--external LABEL=Kind/name]... LABEL=RENDERED.yaml...
      Every document of each rendered kustomization against the Kubernetes schemas of the
      kubernetes-validate package (strict: unknown fields fail), for each version given. The CRD
      kinds in CRD_SCHEMAS (KEDA) are not in those schemas: they are validated against
      keda-v1alpha1.schema.json beside this file instead; any other kind fails. Then the rules
      of Switchboard's deployment: references resolve, pods are locked down, probes on the right
      port, grace period, only the webhook exposed (never the admin API), NetworkPolicies open
      only the webhook port to everyone and the metrics and admin ports to named sources.
  checks.py compose docker-compose.yml
      What the Compose schema cannot see: depends_on targets and their healthchecks, mounted files.
  checks.py context .dockerignore OUT_DIR < NUL-separated paths
      Copies the paths that .dockerignore lets into the build context to OUT_DIR, so that
      validate.sh can run the Dockerfile's planner step on what Docker would send.

Prints one line per failure; exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "ScaledObject",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "TriggerAuthentication",
}
ROLES = {"ingress", "worker", "dispatcher"}
WEBHOOK_PATH = "/webhooks/whatsapp"
WEBHOOK_PORT = 8080  # SWITCHBOARD_HTTP_ADDR: webhook, probes and /metrics of the ingress
METRICS_PORT = 9464  # SWITCHBOARD_METRICS_ADDR: probes and /metrics of the worker and dispatcher
ADMIN_PORT = 9090  # SWITCHBOARD_ADMIN_ADDR: the admin / data-subject API (ingress pods)
UID = 65532

failures: list[str] = []


def fail(where: str, message: str) -> None:
    failures.append(f"{where}: {message}")


# --------------------------------------------------------------------------------------- kube


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kube(args: argparse.Namespace) -> None:
    import jsonschema
    import kubernetes_validate

    keda = json.loads((HERE / "keda-v1alpha1.schema.json").read_text(encoding="utf-8"))
    externals: dict[str, set[tuple[str, str]]] = {}
    for item in args.external:
        label, _, ref = item.partition("=")
        kind, _, name = ref.partition("/")
        externals.setdefault(label, set()).add((kind, name))

    for render in args.renders:
        label, _, path = render.partition("=")
        docs = load_docs(path)
        if not docs:
            fail(label, "rendered nothing")
            continue
        for doc in docs:
            where = f"{label}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            crd = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
            if crd:
                schema = {**keda, "$ref": f"#/$defs/{crd}"}
                for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                    fail(where, f"{error.message} at /{'/'.join(map(str, error.absolute_path))}")
                behavior = doc.get("spec", {}).get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
                if behavior is not None:
                    # Validate KEDA's embedded HPA behavior as what it is: an HPA's behavior.
                    hpa = {
                        "apiVersion": "autoscaling/v2",
                        "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": "behavior-check"},
                        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1, "behavior": behavior},
                    }
                    validate_kube(where + " (advanced.horizontalPodAutoscalerConfig.behavior)", hpa, args.kube_version, kubernetes_validate)
                continue
            validate_kube(where, doc, args.kube_version, kubernetes_validate)
        rules(label, docs, externals.get(label, set()))


def validate_kube(where: str, doc: dict, versions: list[str], kv) -> None:
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            fail(where, f"no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')} "
                 "(a CRD? add it to CRD_SCHEMAS with a schema)")
        except kv.ValidationError as e:
            fail(where, f"Kubernetes {version}: {e.message} at /{'/'.join(map(str, e.absolute_path))}")


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def rules(label: str, docs: list[dict], external: set[tuple[str, str]]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def exists(kind: str, name: str) -> bool:
        return name in by_kind.get(kind, {}) or (kind, name) in external

    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    if len(namespaces) != 1 or None in namespaces:
        fail(label, f"every namespaced resource must be in one namespace, found {sorted(map(str, namespaces))}")

    config: dict[str, str] = {}
    for cm in by_kind.get("ConfigMap", {}).values():
        config.update(cm.get("data", {}))
    shutdown_ms = int(config.get("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", "25000"))

    deployments = by_kind.get("Deployment", {})
    roles_seen = set()
    for name, dep in deployments.items():
        where = f"{label}: Deployment/{name}"
        pod = dep["spec"]["template"]["spec"]
        pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if not matches(dep["spec"]["selector"].get("matchLabels", {}), pod_labels):
            fail(where, "selector does not match the pod template's labels")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != UID:
            fail(where, f"pod must set runAsNonRoot: true and runAsUser: {UID}")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(where, "pod must use the RuntimeDefault seccomp profile")
        if pod.get("automountServiceAccountToken") is not False:
            fail(where, "automountServiceAccountToken must be false")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(cw, "readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(cw, "allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                fail(cw, "capabilities must drop ALL")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        fail(cw, f"resources.{kind}.{r} missing")
            args = c.get("args", [])
            if len(args) != 1 or args[0] not in ROLES:
                fail(cw, f"args must be one role of {sorted(ROLES)}, got {args}")
                continue
            role = args[0]
            roles_seen.add(role)
            if pod_labels.get("app.kubernetes.io/component") != role:
                fail(cw, f"role {role} but component label {pod_labels.get('app.kubernetes.io/component')}")
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            if grace * 1000 <= shutdown_ms + pre_stop * 1000:
                fail(cw, f"terminationGracePeriodSeconds {grace} must exceed SWITCHBOARD_SHUTDOWN_TIMEOUT_MS "
                     f"{shutdown_ms} ms + preStop {pre_stop} s")
            for src in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in src and not exists(kind, src[key]["name"]):
                        fail(cw, f"envFrom {kind} {src[key]['name']} is neither rendered nor declared external")
            probes = {p: c.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
            if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
                fail(cw, f"{role} probes must be /healthz (liveness) and /readyz (readiness), got {probes}")
            port_numbers = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            probe_port = c.get("livenessProbe", {}).get("httpGet", {}).get("port")
            want_port = WEBHOOK_PORT if role == "ingress" else METRICS_PORT
            if port_numbers.get(probe_port, probe_port) != want_port:
                fail(cw, f"{role} probes must use port {want_port}, got {probe_port}")
    if roles_seen != ROLES:
        fail(label, f"expected a Deployment per role {sorted(ROLES)}, found {sorted(roles_seen)}")

    def pods_selected(selector: dict) -> list[dict]:
        return [d for d in deployments.values() if matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))]

    for name, svc in by_kind.get("Service", {}).items():
        where = f"{label}: Service/{name}"
        selected = pods_selected(svc["spec"].get("selector", {}))
        if not selected:
            fail(where, "selector matches no Deployment's pods")
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort")
            for dep in selected:
                names = {p.get("name") for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p.get("containerPort") for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                if target not in names and target not in numbers:
                    fail(where, f"targetPort {target} is not a port of Deployment/{dep['metadata']['name']}")

    for name, ing in by_kind.get("Ingress", {}).items():
        where = f"{label}: Ingress/{name}"
        for rule in ing["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                if p.get("path") != WEBHOOK_PATH or p.get("pathType") != "Exact":
                    fail(where, f"only {WEBHOOK_PATH} (Exact) may be exposed, found {p.get('path')} ({p.get('pathType')})")
                svc = p["backend"]["service"]
                if not exists("Service", svc["name"]):
                    fail(where, f"backend Service {svc['name']} not rendered")
                elif svc["port"].get("name") not in {q.get("name") for q in by_kind["Service"][svc["name"]]["spec"]["ports"]}:
                    fail(where, f"backend port {svc['port']} is not a port of Service {svc['name']}")
                else:
                    backend = next(q for q in by_kind["Service"][svc["name"]]["spec"]["ports"] if q.get("name") == svc["port"].get("name"))
                    if backend.get("targetPort") in ("admin", ADMIN_PORT) or backend.get("port") == ADMIN_PORT:
                        fail(where, f"routes to the admin API (Service {svc['name']} port {backend.get('name')})")

    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_selected(pdb["spec"].get("selector", {}).get("matchLabels", {})):
            fail(f"{label}: PodDisruptionBudget/{name}", "selector matches no Deployment's pods")

    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
            fail(f"{label}: HorizontalPodAutoscaler/{name}", f"scaleTargetRef {ref} is not a rendered Deployment")

    prefetch = int(config.get("SWITCHBOARD_WORKER_PREFETCH", "256"))
    namespace = config.get("SWITCHBOARD_NAMESPACE", "switchboard")
    for name, so in by_kind.get("ScaledObject", {}).items():
        where = f"{label}: ScaledObject/{name}"
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(where, f"scaleTargetRef {target} is not a rendered Deployment")
        elif deployments[target]["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") != "worker":
            fail(where, "must scale the workers")
        if "replicas" in deployments.get(target, {}).get("spec", {}):
            fail(where, f"Deployment/{target} sets spec.replicas, which fights the autoscaler")
        for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
            if hpa["spec"]["scaleTargetRef"]["name"] == target:
                fail(where, f"Deployment/{target} is also the target of an HPA")
        for trig in so["spec"]["triggers"]:
            auth = trig.get("authenticationRef", {}).get("name")
            if auth and not exists("TriggerAuthentication", auth):
                fail(where, f"authenticationRef {auth} not rendered")
            if trig["type"] == "rabbitmq":
                md = trig["metadata"]
                if md.get("queueName") != f"{namespace}.inbound":
                    fail(where, f"queueName {md.get('queueName')} is not {namespace}.inbound")
                if md.get("mode") == "QueueLength" and float(md["value"]) >= prefetch:
                    fail(where, f"QueueLength target {md['value']} must be below SWITCHBOARD_WORKER_PREFETCH {prefetch}")
    for name, ta in by_kind.get("TriggerAuthentication", {}).items():
        for ref in ta["spec"].get("secretTargetRef", []):
            if not exists("Secret", ref["name"]):
                fail(f"{label}: TriggerAuthentication/{name}", f"Secret {ref['name']} neither rendered nor declared external")
            elif ref["name"] in by_kind.get("Secret", {}) and ref["key"] not in by_kind["Secret"][ref["name"]].get("data", {}):
                fail(f"{label}: TriggerAuthentication/{name}", f"Secret {ref['name']} has no key {ref['key']}")

    policies = by_kind.get("NetworkPolicy", {}).values()
    if not any(p["spec"].get("podSelector") == {} and not p["spec"].get("ingress") and "Ingress" in p["spec"].get("policyTypes", [])
               for p in policies):
        fail(label, "no default-deny ingress NetworkPolicy")
    # Only the ingress pods accept connections from anywhere, and only on the webhook port. Any
    # other admitted traffic (Prometheus on the metrics port, admin clients on the admin port)
    # must name its sources; pods other than the ingress admit nothing but the metrics port.
    anywhere = {"0.0.0.0/0", "::/0"}
    for p in policies:
        where = f"{label}: NetworkPolicy/{p['metadata']['name']}"
        ingress_pods = p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "ingress"
        for rule in p["spec"].get("ingress") or []:
            ports = {q.get("port") for q in rule.get("ports") or []}
            sources = rule.get("from") or []
            open_to_all = not sources or any(s.get("ipBlock", {}).get("cidr") in anywhere for s in sources)
            if open_to_all and not (ingress_pods and ports == {WEBHOOK_PORT}):
                fail(where, f"only the ingress pods' port {WEBHOOK_PORT} may accept connections from anywhere, "
                     f"found ports {sorted(ports, key=str) or 'all'}")
            if not ingress_pods and (not ports or ports - {METRICS_PORT}):
                fail(where, f"pods other than the ingress may accept only port {METRICS_PORT} (metrics), "
                     f"found {sorted(ports, key=str) or 'all'}")


# ------------------------------------------------------------------------------------ compose


def compose(args: argparse.Namespace) -> None:
    path = Path(args.file)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    services = doc.get("services", {})
    for name, svc in services.items():
        where = f"{path.name}: service {name}"
        deps = svc.get("depends_on", {})
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            if dep not in services:
                fail(where, f"depends_on unknown service {dep}")
            elif cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                fail(where, f"waits for {dep} to be healthy, but {dep} has no healthcheck")
            elif services[dep].get("profiles") and not svc.get("profiles"):
                fail(where, f"depends on {dep}, which only runs in a profile")
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")) and not (path.parent / source).exists():
                fail(where, f"mounts {source}, which does not exist")
        if "image" not in svc and "build" not in svc:
            fail(where, "has neither image nor build")
    for name in ("rabbitmq", "redis", "ingress", "worker", "dispatcher", "otel-collector", "jaeger", "prometheus"):
        if name not in services:
            fail(path.name, f"service {name} missing")
    if services.get("worker", {}).get("deploy", {}).get("replicas", 1) < 2:
        fail(path.name, "two worker replicas expected")
    if "--appendonly" not in services.get("redis", {}).get("command", []):
        fail(path.name, "Redis must run with AOF (--appendonly yes)")


# ------------------------------------------------------------------------------------ context


def context(args: argparse.Namespace) -> None:
    patterns = []
    for line in Path(args.file).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line)

    def regex(pattern: str) -> re.Pattern[str]:
        # Go filepath.Match plus "**" (any number of directories), as Docker reads the file.
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    rules = [(p.startswith("!"), regex(p.lstrip("!").strip("/").removeprefix("./"))) for p in patterns]

    def ignored(path: str) -> bool:
        # A pattern matches the path or one of its parent directories; the last match wins.
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, rx in rules:
            if any(rx.fullmatch(prefix) for prefix in prefixes):
                result = not negate
        return result

    out = Path(args.out)
    for path in sys.stdin.read().split("\0"):
        if path and not ignored(path) and Path(path).is_file():
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / path)


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kube")
    k.add_argument("--kube-version", action="append", required=True)
    k.add_argument("--external", action="append", default=[])
    k.add_argument("renders", nargs="+")
    c = sub.add_parser("compose")
    c.add_argument("file")
    d = sub.add_parser("context")
    d.add_argument("file")
    d.add_argument("out")
    args = parser.parse_args()
    {"kube": kube, "compose": compose, "context": context}[args.command](args)
    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
