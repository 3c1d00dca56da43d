"""Validate the manifests of deploy/k8s/ offline: `python deploy/k8s/validate.py [FILE ...]`.

- KubeRay objects (ray.io/v1) against the operator's CRD schemas in ../shared/schemas/kuberay/, closed: a field the
  schema does not name is an error, as `kubectl apply` (strict field validation) would make it;
- core objects (PVC, Job, ConfigMap, ...) against the Kubernetes schemas `kubernetes-validate` ships (strict);
- `serveConfigV2`, a string to the CRD, against Ray Serve's own schema (`ServeDeploySchema`).
No network: every schema is a local file.
"""
import copy
import functools
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KUBERAY_SCHEMAS = ROOT / ".." / "shared" / "schemas" / "kuberay"
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
# The oldest Kubernetes we claim to run on; kubernetes-validate picks its newest schemas not newer than this.
KUBERNETES_VERSION = "1.30.0"


def _close(schema: dict) -> dict:
    """Forbid fields the schema does not name, where it names any and does not preserve unknown ones."""
    if "properties" in schema:
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for sub in schema["properties"].values():
            _close(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _close(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            _close(sub)
    return schema


@functools.cache
def crd_validator(kind: str, version: str = "v1") -> jsonschema.protocols.Validator:
    path = KUBERAY_SCHEMAS / CRD_FILES[kind]
    crd = yaml.safe_load(path.read_text())
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _close(copy.deepcopy(entry["schema"]["openAPIV3Schema"]))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top)"


def serve_config_errors(text: str) -> list[str]:
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
        # The schema keeps autoscaling_config a plain dict; Serve checks it only at deploy time, so here too.
        for app in schema.applications:
            for deployment in app.deployments:
                if isinstance(deployment.autoscaling_config, dict):
                    AutoscalingConfig.model_validate(deployment.autoscaling_config)
    except ValidationError as e:
        return [f"serveConfigV2: {line}" for line in str(e).splitlines()[1:] if line.strip()]
    except yaml.YAMLError as e:
        return [f"serveConfigV2: not YAML: {e}"]
    return []


def object_errors(obj: dict) -> list[str]:
    """Every problem found in one Kubernetes object (empty when valid)."""
    import kubernetes_validate

    kind, api = obj.get("kind"), obj.get("apiVersion", "")
    if api.startswith("ray.io/"):
        if kind not in CRD_FILES:
            return [f"{kind}: no KubeRay CRD for this kind"]
        validator = crd_validator(kind, api.split("/", 1)[1])
        errors = [f"{kind} {_where(e)}: {e.message}" for e in validator.iter_errors(obj)]
        if kind == "RayService" and isinstance(obj.get("spec", {}).get("serveConfigV2"), str):
            errors += serve_config_errors(obj["spec"]["serveConfigV2"])
        return errors
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{kind} {_where(e)}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{kind} ({api}): no Kubernetes schema to validate it against"]
    return []


def file_errors(path: Path) -> list[str]:
    errors = []
    for obj in yaml.safe_load_all(path.read_text()):
        if obj is not None:
            name = obj.get("metadata", {}).get("name", "?")
            errors += [f"{path.name}: {name}: {e}" for e in object_errors(obj)]
    return errors


def manifest_files() -> list[Path]:
    return sorted(HERE.glob("*.yaml"))


def main(argv=None) -> None:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or manifest_files()
    if not KUBERAY_SCHEMAS.is_dir():
        sys.exit(f"error: KubeRay CRD schemas not found at {KUBERAY_SCHEMAS.resolve()}")
    errors = [e for path in paths for e in file_errors(path)]
    for path in paths:
        print(f"checked {path}")
    if errors:
        sys.exit("\n".join(["invalid:", *errors]))
    print(f"{len(paths)} files valid")


if __name__ == "__main__":
    main()
