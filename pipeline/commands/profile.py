"""Profiles: named overlays of ``params.yaml`` (``profiles/<name>.yaml``).

A profile holds only the keys it changes, for example every ``sources`` entry switched
to the real remote URL. A profile that builds on another names it in a top-level
``extends:`` (the one key that is not a ``params.yaml`` key); applying it applies the base
first, so ``rnnpipe profile tf-nmt-iwslt-vien-attention`` alone is the whole recipe.
Applying a profile rewrites its values in ``params.yaml`` in place,
keeping the comments and layout, after checking that the result still loads; so ``git
diff params.yaml`` shows exactly what changed, ``git checkout params.yaml`` undoes it,
and ``dvc exp run`` records it like any other parameter change.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import ruamel.yaml
import yaml

from pipeline import artifacts
from pipeline.params import ParamsError, from_dict

FOLDER = Path("profiles")


def _yaml() -> ruamel.yaml.YAML:
    rt = ruamel.yaml.YAML()  # round-trip: comments, order and quoting survive
    rt.indent(mapping=2, sequence=2, offset=0)
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def available(folder: Path = FOLDER) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


EXTENDS = "extends"


def load_overlay(name: str, folder: Path = FOLDER) -> dict[str, Any]:
    """The profile's params.yaml keys (``extends`` removed: :func:`expand` reads it)."""
    return {k: v for k, v in _read(name, folder).items() if k != EXTENDS}


def base_of(name: str, folder: Path = FOLDER) -> str | None:
    """The profile that ``name`` builds on, or None."""
    base = _read(name, folder).get(EXTENDS)
    if base is not None and not isinstance(base, str):
        raise ParamsError(f"{folder / f'{name}.yaml'}: '{EXTENDS}' names one profile, got {base!r}")
    return base


def expand(names: list[str], folder: Path = FOLDER) -> list[str]:
    """``names`` with each profile's bases before it (each applied once, in order):
    ``[tf-nmt-iwslt-vien-attention]`` -> ``[tf-nmt-iwslt-vien, tf-nmt-iwslt-vien-attention]``."""
    out: list[str] = []
    for name in names:
        chain = [name]
        while (base := base_of(chain[-1], folder)) is not None:
            if base in chain:
                raise ParamsError(f"{folder / f'{chain[-1]}.yaml'}: '{EXTENDS}: {base}' makes a cycle: "
                                  + " -> ".join([*chain, base]))
            chain.append(base)
        out += [n for n in reversed(chain) if n not in out]
    return out


def _read(name: str, folder: Path) -> dict[str, Any]:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ParamsError(f"{path}: no such profile; available: {', '.join(available(folder)) or 'none'}")
    try:
        overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(overlay, dict) or not overlay:
        raise ParamsError(f"{path}: a profile is a non-empty mapping of params.yaml keys")
    return overlay


def overlay_into(doc: Any, overlay: dict, source: str, prefix: str = "") -> None:
    """Write ``overlay`` into the round-trip ``doc``.

    Mappings merge key by key; any other value (a list included) replaces the old one.
    A key that params.yaml does not have is an error: profiles change values, never
    the schema.
    """
    for key, new in overlay.items():
        dotted = f"{prefix}{key}"
        if not hasattr(doc, "keys") or key not in doc:
            raise ParamsError(f"{source}: key '{dotted}' is not in params.yaml")
        if isinstance(new, dict):
            overlay_into(doc[key], new, source, f"{dotted}.")
        elif _plain(doc[key]) != new:
            doc[key] = new


def diff(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf value that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in new for change in diff(old.get(key), new[key], f"{prefix}{key}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def apply(names: list[str], params_path: Path, folder: Path = FOLDER, write: bool = True) -> list[tuple[str, Any, Any]]:
    """Apply the profiles in order, each after the profiles it extends, to ``params_path``;
    return the net changes."""
    rt = _yaml()
    doc = rt.load(params_path.read_text(encoding="utf-8"))
    before = _plain(doc)
    names = expand(names, folder)
    for name in names:
        overlay_into(doc, load_overlay(name, folder), str(folder / f"{name}.yaml"))
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    text = buffer.getvalue()
    from_dict(yaml.safe_load(text), source=f"{params_path} with profile(s) {', '.join(names)}")
    changed = diff(before, _plain(doc))
    if write and changed:
        artifacts.write_text(params_path, text)
    return changed


def _plain(value: Any) -> Any:
    """A round-trip node as plain Python, for comparing with the overlay."""
    if hasattr(value, "keys"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline profile",
        description="Apply named overlays (profiles/NAME.yaml) to params.yaml in place, "
        "keeping its comments, after checking that the result loads. `git diff params.yaml` "
        "shows the change and `git checkout params.yaml` undoes it.",
        epilog=f"profiles: {', '.join(available()) or 'none found (run from the repo root)'}\n\n"
        "example:\n  python -m pipeline profile remote && export COINDESK_API_KEY=... && dvc exp run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("names", nargs="+", metavar="NAME", help="profiles to apply, in order")
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--dry-run", action="store_true", help="print the changes; write nothing")
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if (full := expand(args.names)) != args.names:
        print(f"applying {' '.join(full)} (a profile applies the profile it extends first)")
    changed = apply(args.names, Path(args.params), write=not args.dry_run)
    for key, old, new in changed:
        print(f"{key}: {old!r} -> {new!r}")
    verb = "would change" if args.dry_run else "changed"
    print(
        f"{args.params}: {verb} {len(changed)} value(s)" if changed else f"{args.params}: already as the profile says"
    )
    return 0
