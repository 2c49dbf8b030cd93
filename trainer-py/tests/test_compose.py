"""docker-compose.yml: a valid Compose file whose every service starts its component the way that component accepts.

A real Compose implementation (Debian's ``docker-compose`` or the ``docker compose`` plugin) validates and resolves the
file; then each service's command, environment and ports go through the component's own configuration code:

- engines: ``EngineConfig.load`` (the argparse parser and ``VT_ENGINE_*`` reader of ``vllm-train serve``);
- trainers: ``trainer_service.main``'s argument parser and ``load_config`` (file + ``VT_*`` reader);
- streams and inference: ``StreamsAppConfig.load`` / ``InferenceConfig.load`` run in a JVM on the jars the images
  contain, plus a check that every ``VT_*`` variable names a key the component reads (neither rejects every unknown
  key: a typo would silently fall back to a default);
- the one-shot topics service: its very entrypoint, run against the real broker.

Addresses are checked across services (bootstrap servers, registry URL, engine addresses, published ports), so a
renamed port or service breaks this test rather than a user's first ``docker compose up``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from vllm_train.compat import SUPPORTED_VLLM_VERSIONS
from vllm_train.engine.config import ENV_PREFIX as ENGINE_ENV_PREFIX
from vllm_train.engine.config import EngineConfig
from vllm_train.events import TOPICS
from vllm_train.service import config as trainer_config
from vllm_train.service import trainer_service

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROFILES = ("gpu", "cpu")
INSTALL_HINT = "Debian/Ubuntu: apt-get install -y --no-install-recommends docker-compose"
# Interpolation variables of docker-compose.yml: cleared so that the defaults written in the file are what is tested.
COMPOSE_VARIABLES = re.compile(r"^(VLLM_TRAIN_|HF_TOKEN$|COMPOSE_)")


# ---- running Compose ---------------------------------------------------------------------------------------------


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """Runs the Compose CLI on docker-compose.yml with no .env file and none of its variables set."""
    binary = compose_binary()
    if binary is None:
        pytest.skip(f"no Compose implementation here (neither docker-compose nor `docker compose`): {INSTALL_HINT}")
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def run(*args: str, profiles: tuple[str, ...] = (), variables: dict[str, str] | None = None):
        env = {k: v for k, v in os.environ.items() if not COMPOSE_VARIABLES.match(k)}
        cmd = [*binary, "-f", str(COMPOSE_FILE), "--env-file", str(empty_env_file)]
        for profile in profiles:
            cmd += ["--profile", profile]
        return subprocess.run([*cmd, *args], env={**env, **(variables or {})}, capture_output=True, text=True,
                              timeout=120)

    return run


def resolved(compose, profiles=PROFILES, variables=None) -> dict:
    out = compose("config", profiles=profiles, variables=variables)
    assert out.returncode == 0, f"docker-compose config failed:\n{out.stderr}"
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def config(compose) -> dict:
    """The resolved file with both profiles enabled (every service, defaults interpolated)."""
    return resolved(compose)


# ---- reading resolved services (docker-compose 1.x writes short forms, Compose v2 long forms) ----------------------


@dataclass
class Service:
    name: str
    spec: dict

    @property
    def profiles(self) -> set[str]:
        return set(self.spec.get("profiles") or [])

    @property
    def dockerfile(self) -> str | None:
        build = self.spec.get("build")
        if not build:
            return None
        return str((Path(build["context"]) / build.get("dockerfile", "Dockerfile")).resolve().relative_to(REPO))

    @property
    def command(self) -> list[str]:
        return [str(a) for a in self.spec.get("command") or []]

    @property
    def env(self) -> dict[str, str]:
        raw = self.spec.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw)
        return {k: str(v) for k, v in raw.items() if v is not None}

    def vt_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("VT_")}

    @property
    def published(self) -> list[tuple[str, int, int]]:
        """(host ip, host port, container port) of each published port."""
        out = []
        for p in self.spec.get("ports") or []:
            if isinstance(p, dict):
                out.append((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
            else:
                parts = str(p).split("/")[0].split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
                out.append((host_ip, int(parts[-2]), int(parts[-1])))
        return out

    @property
    def mounts(self) -> dict[str, str]:
        """Container path -> named volume."""
        out = {}
        for v in self.spec.get("volumes") or []:
            if isinstance(v, dict):
                if v.get("type", "volume") == "volume":
                    out[v["target"]] = v["source"]
            else:
                source, target = str(v).split(":")[:2]
                out[target] = source
        return out

    @property
    def gpus(self) -> list[dict]:
        devices = (((self.spec.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
        return [d for d in devices or [] if "gpu" in (d.get("capabilities") or [])]

    def depends_on(self) -> dict[str, str]:
        raw = self.spec.get("depends_on") or {}
        if isinstance(raw, list):
            return {name: "service_started" for name in raw}
        return {name: (cond or {}).get("condition", "service_started") for name, cond in raw.items()}


def services(config: dict) -> dict[str, Service]:
    return {name: Service(name, spec) for name, spec in config["services"].items()}


@dataclass
class Stack:
    """What one `docker compose --profile P up` starts, by component."""

    profile: str
    kafka: Service
    registry: Service
    topics: Service
    streams: Service
    inference: Service
    engines: list[Service]
    trainer: Service


def stack_for(config: dict, profile: str) -> Stack:
    active = [s for s in services(config).values() if not s.profiles or profile in s.profiles]

    def by(predicate, what) -> list[Service]:
        found = [s for s in active if predicate(s)]
        assert found, f"profile {profile}: no {what} service"
        return found

    def one(predicate, what) -> Service:
        found = by(predicate, what)
        assert len(found) == 1, f"profile {profile}: several {what} services: {[s.name for s in found]}"
        return found[0]

    python_images = ("trainer-py/Dockerfile", "trainer-py/Dockerfile.vllm")
    return Stack(
        profile=profile,
        kafka=one(lambda s: str(s.spec.get("image", "")).startswith("apache/kafka:"), "Kafka"),
        registry=one(lambda s: str(s.spec.get("image", "")).startswith("apicurio/apicurio-registry:"), "registry"),
        topics=one(lambda s: s.dockerfile == "streams/Dockerfile" and s.spec.get("entrypoint"), "topics"),
        streams=one(lambda s: s.dockerfile == "streams/Dockerfile" and not s.spec.get("entrypoint"), "streams"),
        inference=one(lambda s: s.dockerfile == "inference/Dockerfile", "inference"),
        engines=by(lambda s: s.dockerfile in python_images and s.command[:1] == ["serve"], "engine"),
        trainer=one(lambda s: s.dockerfile in python_images and s.command[:1] == ["trainer"], "trainer"),
    )


@pytest.fixture(scope="module", params=PROFILES)
def profile(request, config) -> Stack:
    """The services of one profile (the Kafka broker fixture of conftest is `stack`)."""
    return stack_for(config, request.param)


# ---- the images: Dockerfiles as the source of what is inside them -------------------------------------------------


def dockerfile_text(path: str) -> str:
    return (REPO / path).read_text().replace("\\\n", " ")


def entrypoint(path: str) -> list[str]:
    lines = [line for line in dockerfile_text(path).splitlines() if line.startswith("ENTRYPOINT ")]
    assert lines, f"{path} has no ENTRYPOINT"
    return json.loads(lines[-1][len("ENTRYPOINT "):])


def image_paths(path: str) -> dict[str, Path]:
    """/app/... in the final image -> the file or folder of this checkout the build stage put there."""
    text = dockerfile_text(path)
    assert "COPY --from=build /out /app" in text, f"{path}: the runtime stage no longer copies /out to /app"
    out: dict[str, Path] = {}
    for src, dst in re.findall(r"cp (?:-r )?(\S+) /out/(\S+)", text):
        out["/app/" + dst] = REPO / src
    for module, dst in re.findall(r"-pl (\w+) dependency:copy-dependencies .*?-DoutputDirectory=/out/(\S+)", text):
        out["/app/" + dst] = REPO / module / "target" / "lib"  # the module's own copy of its runtime dependencies
    return out


def local_classpath(image_classpath: str, dockerfile: str) -> str:
    paths = image_paths(dockerfile)
    local = []
    for entry in image_classpath.split(":"):
        folder, star = (entry[:-2], "/*") if entry.endswith("/*") else (entry, "")
        assert folder in paths, f"{dockerfile}: the image has nothing at {folder} (classpath entry {entry})"
        target = paths[folder]
        if not target.exists():
            raise RuntimeError(f"{target} is missing: build the Java modules first (./pipeline setup)")
        local.append(f"{target}{star}")
    return ":".join(local)


def java_main(command: list[str]) -> tuple[str, str, list[str]]:
    """(classpath, main class, arguments) of a `java ... -cp CP Main args` command."""
    i = command.index("-cp")
    return command[i + 1], command[i + 2], command[i + 3:]


# ---- the Java services' own config loaders ------------------------------------------------------------------------

# How each service's main loads its config, then the resolved values the checks need, as one line of JSON.
JAVA_LOADS = {
    "streams": """
        var c = io.vllmtrain.streams.StreamsAppConfig.load(null, System.getenv());
        out.put("keys", new ArrayList<>(io.vllmtrain.streams.StreamsAppConfig.KEYS.keySet()));
        // StreamsApp gives its Prometheus server only a port: it binds every interface.
        out.put("listen", Map.of("metrics", Map.of("host", "0.0.0.0", "port", c.metricsPort())));
        out.put("stateDir", c.stateDir().toString());
        out.put("bootstrap", c.kafka().bootstrapServers());
        out.put("registry", c.kafka().registryUrl());""",
    "inference": """
        var c = io.vllmtrain.inference.InferenceConfig.load(null, System.getenv());
        Map<String, Object> listen = new LinkedHashMap<>();
        listen.put("api", Map.of("host", c.host(), "port", c.port()));
        if (c.metricsEnabled()) {
          listen.put("metrics", Map.of("host", c.metricsHost(), "port", c.metricsPort()));
        }
        out.put("listen", listen);
        out.put("baseModel", c.baseModel());
        out.put("engines", c.engines());
        out.put("bootstrap", c.kafka().bootstrapServers());
        out.put("registry", c.kafka().registryUrl());""",
}
JAVA_CHECK = """
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.*;

/** Loads a service config from this process's environment, as the service's main does, and prints it as JSON. */
public class ComposeConfigCheck {
  public static void main(String[] args) throws Exception {
    Map<String, Object> out = new LinkedHashMap<>();
    try {%s
    } catch (IllegalArgumentException e) {
      out.put("error", e.getMessage());
    }
    Set<String> clientKeys = new TreeSet<>();
    clientKeys.addAll(org.apache.kafka.clients.producer.ProducerConfig.configNames());
    clientKeys.addAll(org.apache.kafka.clients.consumer.ConsumerConfig.configNames());
    clientKeys.addAll(org.apache.kafka.clients.admin.AdminClientConfig.configNames());
    out.put("kafkaClientKeys", clientKeys);
    System.out.println(new ObjectMapper().writeValueAsString(out));
  }
}
"""


@pytest.fixture(scope="module")
def java_check_source(tmp_path_factory) -> dict[str, Path]:
    sources = {}
    for kind, load in JAVA_LOADS.items():
        sources[kind] = tmp_path_factory.mktemp(f"java-{kind}") / "ComposeConfigCheck.java"
        sources[kind].write_text(JAVA_CHECK % load)
    return sources


def java_config(service: Service, kind: str, sources: dict[str, Path]) -> dict:
    """The service's config as its main class would load it from the service's environment (no other VT_* leaks)."""
    dockerfile = service.dockerfile
    image_cp, main_class, args = java_main(entrypoint(dockerfile))
    expected = {"streams": "io.vllmtrain.streams.StreamsApp", "inference": "io.vllmtrain.inference.InferenceMain"}
    assert main_class == expected[kind], f"{dockerfile} runs {main_class}"
    assert args == [] and service.command == [], (
        f"{service.name}: {main_class} takes only --config FILE; the compose file configures it with VT_* variables")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    proc = subprocess.run(["java", "-cp", local_classpath(image_cp, dockerfile), str(sources[kind])],
                          env={**env, **service.env}, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def config_key(env_name: str) -> str:
    """io.vllmtrain.schemas.ConfigSource: strip VT_, lower-case, '_' -> '.'."""
    return env_name[len("VT_"):].lower().replace("_", ".")


def java_source_keys(relative: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, (REPO / relative).read_text()))


REGISTRY_KEYS = java_source_keys("schemas/src/main/java/io/vllmtrain/schemas/KafkaSettings.java",
                                 r'"(registry\.[a-z.]+)"')
INFERENCE_KEYS = java_source_keys("inference/src/main/java/io/vllmtrain/inference/InferenceConfig.java",
                                  r'(?:r\.\w+|values\.get)\("([a-z][a-z0-9.]*)"')


def unknown_java_keys(service: Service, own_keys: set[str], kafka_client_keys: set[str]) -> list[str]:
    unknown = []
    for name in service.vt_env():
        key = config_key(name)
        if key.startswith("kafka."):
            if key[len("kafka."):] not in kafka_client_keys:
                unknown.append(name)
        elif key not in own_keys and key not in REGISTRY_KEYS:
            unknown.append(name)
    return unknown


# ---- the Python services' own config loaders ----------------------------------------------------------------------


def engine_config(engine: Service, tmp_path: Path) -> tuple[EngineConfig, Path]:
    """EngineConfig from the service's command and environment; returns it and the adapter root in the container.

    The adapter root exists in the container (a mounted volume, checked by the caller) but not here, so the loader
    gets a local folder in its place, in the same flag or variable."""
    assert engine.dockerfile and entrypoint(engine.dockerfile) == ["vllm-train"]
    argv, env = engine.command[1:], dict(engine.env)
    flags = vars(EngineConfig.parser().parse_args(argv))
    local = tmp_path / "adapters"
    local.mkdir(exist_ok=True)
    if flags["adapter_root"] is not None:
        root = Path(flags["adapter_root"])
        i = argv.index("--adapter-root")
        argv = [*argv[:i + 1], str(local), *argv[i + 2:]]
    else:
        root = Path(env.get(ENGINE_ENV_PREFIX + "ADAPTER_ROOT", "adapters"))
        env[ENGINE_ENV_PREFIX + "ADAPTER_ROOT"] = str(local)
    return EngineConfig.load(argv, env), root


class ArgumentsAccepted(Exception):
    pass


def trainer_config_of(trainer: Service, monkeypatch) -> trainer_config.TrainerServiceConfig:
    """The trainer's own argparse accepts the command; then load_config validates the environment."""
    assert trainer.dockerfile and entrypoint(trainer.dockerfile) == ["vllm-train"]

    def stop_after_parsing(path, env=None):
        raise ArgumentsAccepted(path)

    monkeypatch.setattr(trainer_service, "load_config", stop_after_parsing)
    with pytest.raises(ArgumentsAccepted) as parsed:
        trainer_service.main(trainer.command[1:])  # an unknown flag would exit 2 before this
    assert parsed.value.args[0] is None, "the trainer is configured with VT_* variables, not a config file"
    monkeypatch.undo()
    return trainer_config.load_config(None, trainer.env)


# ---- addresses ----------------------------------------------------------------------------------------------------


def listeners(kafka: Service, variable: str) -> dict[str, tuple[str, int]]:
    """KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS as {listener name: (host, port)}."""
    out = {}
    for item in kafka.env[variable].split(","):
        name, address = item.split("://")
        host, port = address.rsplit(":", 1)
        out[name] = (host, int(port))
    return out


def assert_reaches_kafka(stack: Stack, bootstrap: str, who: str):
    advertised = listeners(stack.kafka, "KAFKA_ADVERTISED_LISTENERS")
    bound = listeners(stack.kafka, "KAFKA_LISTENERS")
    for address in bootstrap.split(","):
        host, port = address.rsplit(":", 1)
        assert host == stack.kafka.name, f"{who}: bootstrap server {address} is not the {stack.kafka.name} service"
        names = [n for n, hp in advertised.items() if hp == (host, int(port))]
        assert names, f"{who}: {address} is not an advertised listener of Kafka ({advertised})"
        assert bound[names[0]][1] == int(port), f"{who}: Kafka's {names[0]} listener is not bound to port {port}"


def registry_port(registry: Service) -> int:
    return int(registry.env.get("QUARKUS_HTTP_PORT", 8080))  # Apicurio's HTTP port unless moved


def assert_reaches_registry(stack: Stack, url: str, who: str):
    m = re.fullmatch(r"http://([\w.-]+):(\d+)", url)
    assert m, f"{who}: registry URL {url!r} is not http://host:port (the Java serdes add /apis/registry/v3)"
    assert m.group(1) == stack.registry.name and int(m.group(2)) == registry_port(stack.registry), (
        f"{who}: {url} is not the {stack.registry.name} service on port {registry_port(stack.registry)}")


def assert_publishes_only(service: Service, listen: dict[str, tuple[str, int]], must: tuple[str, ...] = ()):
    """Every published container port is one the component listens on, reachable from outside its container."""
    ports = {port: (name, host) for name, (host, port) in listen.items()}
    for _, _, target in service.published:
        assert target in ports, f"{service.name} publishes port {target} but listens on {sorted(ports)} ({listen})"
        name, host = ports[target]
        assert host == "0.0.0.0", f"{service.name}: {name} port {target} listens on {host}, unreachable when published"
    for name in must:
        assert listen[name][1] in {t for _, _, t in service.published}, f"{service.name}: {name} port is not published"


# ---- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("cpu",), PROFILES], ids=["no-profile", "gpu", "cpu", "both"])
def test_compose_validates_the_file(compose, profiles):
    out = compose("config", "-q", profiles=profiles)
    assert out.returncode == 0, f"docker-compose {' '.join(f'--profile {p}' for p in profiles)} config:\n{out.stderr}"


def test_profiles_split_gpu_and_cpu_services_over_one_shared_stack(config):
    by_name = services(config)
    shared = {n for n, s in by_name.items() if not s.profiles}
    assert shared == {"kafka", "registry", "topics", "streams"}
    for profile in PROFILES:
        stack = stack_for(config, profile)
        own = [stack.inference, stack.trainer, *stack.engines]
        assert all(s.profiles == {profile} for s in own), [(s.name, s.profiles) for s in own]
        for s in own + [stack.streams, stack.topics, stack.registry]:
            for dependency in s.depends_on():
                assert dependency in shared, f"{s.name} depends on {dependency}, which a profile may leave out"


def test_gpu_profile_runs_vllm_and_the_trainer_on_reserved_gpus(config, tmp_path):
    stack = stack_for(config, "gpu")
    for engine in stack.engines:
        assert engine.dockerfile == "trainer-py/Dockerfile.vllm"
        engine_cfg, _ = engine_config(engine, tmp_path)
        assert engine_cfg.backend == "vllm"
        assert [g.get("driver") for g in engine.gpus] == ["nvidia"], f"{engine.name} reserves no NVIDIA GPU"
    assert [g.get("driver") for g in stack.trainer.gpus] == ["nvidia"], "the GPU trainer reserves no NVIDIA GPU"
    assert trainer_config.load_config(None, stack.trainer.env).train.device == "cuda"


def test_cpu_profile_runs_the_hf_backend_and_cpu_trainer_on_the_tiny_model_built_into_the_image(config, tmp_path):
    stack = stack_for(config, "cpu")
    tiny = re.search(r"vllm-train tiny-model --out (\S+)", dockerfile_text("trainer-py/Dockerfile")).group(1)
    for s in [stack.trainer, *stack.engines]:
        assert s.dockerfile == "trainer-py/Dockerfile" and not s.gpus, f"{s.name} must run without a GPU"
    for engine in stack.engines:
        engine_cfg, _ = engine_config(engine, tmp_path)
        assert (engine_cfg.backend, engine_cfg.device, engine_cfg.model) == ("hf", "cpu", tiny)
    train = trainer_config.load_config(None, stack.trainer.env).train
    assert (train.device, train.model) == ("cpu", tiny)
    assert len(stack.engines) >= 2, "the CPU profile shows a rollout over more than one replica"


def test_vllm_image_is_the_release_that_the_engine_supports():
    base = re.search(r"ARG VLLM_IMAGE=(\S+)", dockerfile_text("trainer-py/Dockerfile.vllm")).group(1)
    assert base == f"vllm/vllm-openai:v{SUPPORTED_VLLM_VERSIONS[0]}"


def test_dockerfiles_copy_only_what_the_repository_has():
    for dockerfile in ("streams/Dockerfile", "inference/Dockerfile", "trainer-py/Dockerfile",
                       "trainer-py/Dockerfile.vllm"):
        for line in dockerfile_text(dockerfile).splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                for source in line.split()[1:-1]:
                    assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: not in the repository"


def test_engines_parse_with_the_engine_config_and_share_the_trainers_adapter_volume(profile, tmp_path, monkeypatch):
    trainer = trainer_config_of(profile.trainer, monkeypatch)
    assert trainer.adapter_root in {Path(p) for p in profile.trainer.mounts}, "the trainer's adapter.root is no volume"
    adapters_volume = profile.trainer.mounts[str(trainer.adapter_root)]
    for engine in profile.engines:
        unknown = [k for k in engine.vt_env() if not k.startswith(ENGINE_ENV_PREFIX)
                   or k[len(ENGINE_ENV_PREFIX):].lower() not in EngineConfig.__dataclass_fields__]
        assert not unknown, f"{engine.name}: the engine reads no such variables: {unknown}"
        cfg, root = engine_config(engine, tmp_path)
        # The trainer publishes file URIs of its folders: the engines must see them at the very same path.
        assert root == trainer.adapter_root, f"{engine.name} loads adapters from {root}, the trainer writes to " \
                                             f"{trainer.adapter_root}"
        assert engine.mounts.get(str(root)) == adapters_volume, f"{engine.name} does not mount {adapters_volume}"
        assert cfg.host == "0.0.0.0", f"{engine.name} listens on {cfg.host}: the inference service cannot reach it"
        assert cfg.replica == engine.name, "replica names are the service names, as the inference logs show them"
        assert f"localhost:{cfg.port}" in " ".join(engine.spec["healthcheck"]["test"]), "health probes another port"
        assert_publishes_only(engine, {"grpc": (cfg.host, cfg.port)})


def test_trainer_config_validates_and_points_at_the_stack(profile, monkeypatch):
    cfg = trainer_config_of(profile.trainer, monkeypatch)
    ignored = [k for k in profile.trainer.vt_env() if not trainer_config._is_trainer_env_key(k[len("VT_"):])]
    assert not ignored, f"{profile.trainer.name}: the trainer ignores {ignored}"
    assert_reaches_kafka(profile, cfg.kafka.bootstrap_servers, profile.trainer.name)
    assert_reaches_registry(profile, cfg.kafka.registry_url, profile.trainer.name)
    assert_publishes_only(profile.trainer, {"metrics": (cfg.metrics_host, cfg.metrics_port)}, must=("metrics",))


def test_streams_config_loads_in_its_image_classpath_and_points_at_the_stack(config, java_check_source):
    profile = stack_for(config, "cpu")  # streams belongs to no profile: the same service in both
    cfg = java_config(profile.streams, "streams", java_check_source)
    assert "error" not in cfg, cfg.get("error")
    unknown = unknown_java_keys(profile.streams, set(cfg["keys"]), set(cfg["kafkaClientKeys"]))
    assert not unknown, f"streams reads no such keys: {unknown}"
    assert cfg["stateDir"] in profile.streams.mounts, "state stores off a volume: each restart rebuilds them"
    assert_reaches_kafka(profile, cfg["bootstrap"], "streams")
    assert_reaches_registry(profile, cfg["registry"], "streams")
    listen = {name: (v["host"], v["port"]) for name, v in cfg["listen"].items()}
    assert_publishes_only(profile.streams, listen, must=("metrics",))


def test_inference_config_loads_and_routes_to_every_engine_of_its_profile(profile, java_check_source, tmp_path):
    cfg = java_config(profile.inference, "inference", java_check_source)
    assert "error" not in cfg, cfg.get("error")
    assert {"server.port", "base.model", "engine.addresses"} <= INFERENCE_KEYS, "key table not found in the source"
    unknown = unknown_java_keys(profile.inference, INFERENCE_KEYS, set(cfg["kafkaClientKeys"]))
    assert not unknown, f"inference reads no such keys: {unknown}"
    assert_reaches_kafka(profile, cfg["bootstrap"], "inference")
    assert_reaches_registry(profile, cfg["registry"], "inference")
    listen = {name: (v["host"], v["port"]) for name, v in cfg["listen"].items()}
    assert_publishes_only(profile.inference, listen, must=("api",))

    engines = {}
    for engine in profile.engines:
        engine_cfg, _ = engine_config(engine, tmp_path)
        engines[f"{engine.name}:{engine_cfg.port}"] = engine_cfg
    assert sorted(cfg["engines"]) == sorted(engines), "engine.addresses must list exactly the profile's engines"
    # One base model everywhere: engines refuse adapters of another model, inference refuses their versions.
    trainer_model = trainer_config.load_config(None, profile.trainer.env).train.model
    assert {cfg["baseModel"], trainer_model} | {e.served_model_name for e in engines.values()} == {trainer_model}


def test_one_variable_chooses_the_model_of_the_whole_gpu_stack(compose, tmp_path):
    stack = stack_for(resolved(compose, variables={"VLLM_TRAIN_MODEL": "Qwen/Qwen2.5-1.5B-Instruct"}), "gpu")
    engine_cfg, _ = engine_config(stack.engines[0], tmp_path)
    assert engine_cfg.model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert trainer_config.load_config(None, stack.trainer.env).train.model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert stack.inference.env["VT_BASE_MODEL"] == "Qwen/Qwen2.5-1.5B-Instruct"


def test_registry_and_kafka_are_wired_to_each_other(config):
    stack = stack_for(config, "cpu")
    assert_reaches_kafka(stack, stack.registry.env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"], "registry")
    assert stack.registry.env["APICURIO_STORAGE_KIND"] == "kafkasql", "schemas must outlive a registry restart"
    assert {t for _, _, t in stack.registry.published} == {registry_port(stack.registry)}
    bound = {port for _, port in listeners(stack.kafka, "KAFKA_LISTENERS").values()}
    advertised = listeners(stack.kafka, "KAFKA_ADVERTISED_LISTENERS")
    for _, host_port, target in stack.kafka.published:
        assert target in bound
        # A client on the host is sent to the advertised address of the listener it reached: it must be that port.
        assert ("localhost", host_port) in advertised.values(), f"no listener advertises localhost:{host_port}"


@pytest.mark.stack
def test_topics_service_creates_the_topic_table_with_its_own_entrypoint(config, stack):
    from confluent_kafka.admin import AdminClient

    topics = stack_for(config, "cpu").topics
    image_cp, main_class, args = java_main(topics.spec["entrypoint"])
    assert_reaches_kafka(stack_for(config, "cpu"), topics.env["VT_KAFKA_BOOTSTRAP_SERVERS"], "topics")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    proc = subprocess.run(["java", "-cp", local_classpath(image_cp, topics.dockerfile), main_class, *args],
                          env={**env, **topics.env, "VT_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers},
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "topics " in proc.stdout
    existing = AdminClient({"bootstrap.servers": stack.bootstrap_servers}).list_topics(timeout=30).topics
    assert {t.name for t in TOPICS.values()} <= set(existing)
