"""Catalog errors name the model, the key and the fix; valid catalogs resolve paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.catalog import DEFAULT_TOLERANCE, CatalogError, load_catalog, parse_catalog
from tests.build.helpers import mlp_entry, write_catalog


def _error(tmp_path: Path, models: list[dict]) -> str:
    with pytest.raises(CatalogError) as exc:
        load_catalog(write_catalog(tmp_path, models))
    return str(exc.value)


def test_valid_catalog_resolves_paths_relative_to_the_catalog_and_applies_defaults(tmp_path):
    entry = mlp_entry(tmp_path)
    del entry["quantize"], entry["tolerance"]
    cat = load_catalog(write_catalog(tmp_path, [entry]))
    spec = cat.get("mlp")
    assert Path(spec.source) == tmp_path / "mlp.onnx"
    assert spec.validation == tmp_path / "mlp_val.npz"
    assert (spec.quantize, spec.target, spec.auth, spec.strict) == ("auto", "auto", "iam", False)
    assert spec.tolerance == DEFAULT_TOLERANCE
    assert cat.root == tmp_path.resolve()


def test_unknown_key_names_model_key_and_allowed_keys(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, quantise="dynamic")])
    assert "model 'mlp'" in msg and "unknown key 'quantise'" in msg and "quantize" in msg


def test_bad_name_says_what_a_name_may_hold(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, name="Bad_Name")])
    assert "'name'" in msg and "lowercase" in msg


def test_missing_file_names_the_key_and_path(tmp_path):
    entry = mlp_entry(tmp_path, validation="nope.npz")
    msg = _error(tmp_path, [entry])
    assert "model 'mlp'" in msg and "key 'validation'" in msg and "nope.npz" in msg and "does not exist" in msg


def test_missing_source_file(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, source="gone.onnx")])
    assert "key 'source'" in msg and "gone.onnx" in msg


def test_static_without_calibration_is_refused_with_the_alternatives(tmp_path):
    entry = mlp_entry(tmp_path, quantize="static")
    del entry["calibration"]
    msg = _error(tmp_path, [entry])
    assert "key 'calibration'" in msg and "quantize: static" in msg and "dynamic/auto" in msg


def test_unknown_tolerance_key_lists_the_known_ones(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, tolerance={"top1": 0.9})])
    assert "unknown key 'tolerance.top1'" in msg and "top1_agreement" in msg and "min_cosine" in msg


def test_duplicate_names_are_refused(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path), mlp_entry(tmp_path)])
    assert "model 'mlp'" in msg and "duplicate name" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, quantise="x"), mlp_entry(tmp_path, name="b", source="gone.onnx")])
    assert "2 problem(s)" in msg and "model 'mlp'" in msg and "model 'b'" in msg


def test_the_problem_count_counts_each_problem_of_one_entry(tmp_path):
    # given one entry with two problems (a bad name and an unknown key)
    msg = _error(tmp_path, [mlp_entry(tmp_path, name="Bad_Name", quantise="x")])
    # then both are listed and counted
    assert "2 problem(s)" in msg and "not a valid name" in msg and "unknown key 'quantise'" in msg


def test_torch_and_sklearn_sources_need_an_example_input(tmp_path):
    (tmp_path / "m.joblib").write_bytes(b"")
    msg = _error(tmp_path, [{"name": "sk", "source": "m.joblib"}, {"name": "pt", "source": "pkg.mod:make"}])
    assert msg.count("key 'example_input' is required") == 2


def test_a_source_that_is_neither_file_nor_factory(tmp_path):
    msg = _error(tmp_path, [{"name": "m", "source": "model.bin"}])
    assert "neither a file" in msg and "pkg.module:factory" in msg
    assert "does not exist" in _error(tmp_path, [{"name": "m", "source": "model.h5"}])  # a Keras source


def test_strict_needs_validation_data(tmp_path):
    entry = mlp_entry(tmp_path, strict=True)
    del entry["validation"]
    assert "key 'validation' is required with strict: true" in _error(tmp_path, [entry])


def test_not_a_catalog_and_missing_catalog(tmp_path):
    with pytest.raises(CatalogError, match="'models:' list"):
        parse_catalog({"model": []}, tmp_path / "models.yaml")
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "absent.yaml")


def test_unknown_model_lists_the_known_ones(tmp_path):
    cat = load_catalog(write_catalog(tmp_path, [mlp_entry(tmp_path)]))
    with pytest.raises(CatalogError, match="known models: mlp"):
        cat.get("other")


def test_the_sample_catalog_is_well_formed():
    # the files come from `make samples`; here only the entries themselves are checked
    import yaml

    from infra.catalog import ModelSpec

    root = Path(__file__).resolve().parents[2]
    raw = yaml.safe_load((root / "models.yaml").read_text())["models"]
    specs = {m.name: m for m in (ModelSpec.model_validate(e) for e in raw)}
    assert specs["iris-classifier"].source_kind == "sklearn"
    assert (specs["digits-mlp"].source_kind, specs["digits-mlp"].quantize) == ("torch", "dynamic")
    assert (specs["digits-cnn"].quantize, specs["digits-cnn"].calibration is not None) == ("static", True)
    assert (specs["sentiment"].source_kind, specs["sentiment"].preprocess.kind) == ("hf", "text")
    # tokenizer, task and pooling come from the directories themselves (infra/tasks/detect.py)
    assert (specs["embedder"].source_kind, specs["embedder"].preprocess, specs["embedder"].task) == ("hf", None, None)
    assert specs["tagger"].source_kind == "hf" and specs["tagger"].validation is not None
    assert specs["tiny-decoder"].source_kind == "hf" and specs["tiny-decoder"].generation.max_context == 128


def test_snapstart_defaults_on_and_gives_way_to_provisioned_concurrency(tmp_path):
    cat = load_catalog(write_catalog(tmp_path, [
        mlp_entry(tmp_path), mlp_entry(tmp_path, name="pc", provisioned_concurrency=2),
        mlp_entry(tmp_path, name="off", snapstart=False)]))
    assert [cat.get(n).snapstart_enabled for n in ("mlp", "pc", "off")] == [True, False, False]


def test_snapstart_with_provisioned_concurrency_is_refused_naming_the_fix(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, snapstart=True, provisioned_concurrency=2)])
    assert "model 'mlp'" in msg and "'snapstart'" in msg and "provisioned_concurrency" in msg
    assert "snapstart: false" in msg


def test_batch_defaults_are_bounded_and_batched(tmp_path):
    spec = load_catalog(write_catalog(tmp_path, [mlp_entry(tmp_path)])).get("mlp")
    b = spec.batch
    assert (b.max_concurrency, b.batch_size, b.max_batching_window_s, b.max_receive_count, b.retry_delay_s) == \
        (2, 10, 0, 3, 60)


def test_batch_settings_are_checked_against_what_aws_allows(tmp_path):
    msg = _error(tmp_path, [mlp_entry(tmp_path, batch={"batch_size": 100})])
    assert "model 'mlp'" in msg and "max_batching_window_s" in msg and "at least 1" in msg
    msg = _error(tmp_path, [mlp_entry(tmp_path, batch={"max_concurrency": 1})])
    assert "'batch.max_concurrency'" in msg and "greater than or equal to 2" in msg
    msg = _error(tmp_path, [mlp_entry(tmp_path, batch={"concurrency": 4})])
    assert "unknown key 'batch.concurrency'" in msg and "max_concurrency" in msg and "batch_size" in msg


# --- training: and promotion: (issue 12) ----------------------------------------------------
def _training_entry(tmp_path, **training):
    (tmp_path / "trainer.py").write_text("def train(data_dir, hp, model_dir):\n    return None\n")
    entry = mlp_entry(tmp_path)
    entry["training"] = {"entry_point": "trainer:train", **training}
    return entry


def test_training_defaults_resolve_local_data_and_scripts_next_to_the_catalog(tmp_path):
    entry = _training_entry(tmp_path, data="train-data")
    del entry["source"]  # the first `modelfn train` makes version 1
    spec = load_catalog(write_catalog(tmp_path, [entry])).get("mlp")
    t = spec.training
    assert (t.instance_type, t.max_runtime_s, t.image, t.framework_version) == ("ml.g5.xlarge", 3600, None, "2.13.0")
    assert t.gpu and Path(t.data) == tmp_path.resolve() / "train-data" and spec.source == ""
    assert spec.promotion.max_accuracy_drop == 0.01 and spec.promotion.max_latency_ratio == 1.5
    assert t.entry(tmp_path) == (tmp_path, "trainer", "train")
    script = _training_entry(tmp_path, entry_point="trainer.py", data="s3://bucket/prefix/", instance_type="ml.m5.large")
    t = load_catalog(write_catalog(tmp_path, [script])).get("mlp").training
    assert t.entry(tmp_path) == (tmp_path.resolve(), "trainer", "train") and t.data == "s3://bucket/prefix/"
    assert not t.gpu


@pytest.mark.parametrize(("training", "expected"), [
    ({"entry_point": "not an entry"}, "is not an entry point"),
    ({"entry_point": "elsewhere:train"}, "module 'elsewhere' is not next to the catalog"),
    ({"entry_point": "gone.py"}, "script"),
    ({"hyperparameters": {"modelfn_x": 1}}, "reserved for modelfn"),
    ({"instance_type": "g5.xlarge"}, "not a SageMaker instance type"),
    ({"epochs": 3}, "unknown key 'training.epochs'; remove it or use one of: entry_point, data"),
])
def test_bad_training_entries_name_the_key_and_the_fix(tmp_path, training, expected):
    assert expected in _error(tmp_path, [_training_entry(tmp_path, **training)])


def test_training_needs_a_validation_set_and_a_model_without_training_needs_a_source(tmp_path):
    entry = _training_entry(tmp_path)
    del entry["validation"]
    assert "key 'validation' is required with 'training:'" in _error(tmp_path, [entry])
    plain = mlp_entry(tmp_path)
    del plain["source"]
    assert "missing required key 'source'" in _error(tmp_path, [plain])
    bad = _training_entry(tmp_path)
    bad["promotion"] = {"max_accuracy": 0.1}
    assert ("unknown key 'promotion.max_accuracy' (did you mean 'max_accuracy_drop'?); remove it or use one of: "
            "max_accuracy_drop") in _error(tmp_path, [bad])


@pytest.mark.parametrize(("extra", "says"), [
    ({"quantise": "dynamic"}, "unknown key 'quantise' (did you mean 'quantize'?)"),
    ({"quantize": "dinamic"}, "(got 'dinamic') (did you mean 'dynamic'?)"),
    ({"target": "lamda"}, "(did you mean 'lambda'?)"),
    ({"postprocess": {"softmx": True}}, "unknown key 'postprocess.softmx' (did you mean 'softmax'?)"),
    ({"promotion": {"max_acuracy_drop": 0.1}}, "(did you mean 'max_accuracy_drop'?)"),
])
def test_typos_in_keys_and_values_get_a_did_you_mean(tmp_path, extra, says):
    write_catalog(tmp_path, [])
    (tmp_path / "m.onnx").write_bytes(b"")
    path = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx", **extra}])
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert says in " ".join(str(info.value).split())


def test_an_unknown_model_name_gets_a_did_you_mean(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    catalog = load_catalog(write_catalog(tmp_path, [{"name": "iris-classifier", "source": "m.onnx"}]))
    with pytest.raises(CatalogError, match=r"did you mean 'iris-classifier'\?"):
        catalog.get("iris-clasifier")
