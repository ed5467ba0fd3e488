"""Stage parameters, declared where they are used.

Every stage module declares `PARAMS = {name: Param(type, default, help)}` (shared groups such as
wsss.training.PARAMS are merged in with `{**training.PARAMS, ...}`) and its `run` begins with
`params = resolve(params, PARAMS, "<stage>")`: a missing or unknown name, or a value of the wrong type, is
a one-line error naming it, and absent optional names take their defaults, so the code below can index
`params[name]`. `wsss <stage> --help` prints the table (`describe`)."""
from typing import Any, NamedTuple

from wsss.errors import DataError

REQUIRED = object()


class Param(NamedTuple):
    type: Any  # int, float (accepts int), bool, str, list, dict, or a tuple of them; None allowed if default is None
    default: Any = REQUIRED
    help: str = ""


class ParamError(DataError):
    """A stage was given a parameter it does not know, lacks one it needs, or got one of the wrong type."""


def resolve(params: dict, spec: dict[str, Param], stage: str) -> dict:
    """`params` checked against `spec`, with the defaults of absent optional names filled in."""
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ParamError(f"{stage}: unknown param {unknown[0]!r} (known: {', '.join(sorted(spec))})")
    missing = [name for name, p in spec.items() if p.default is REQUIRED and name not in params]
    if missing:
        raise ParamError(f"{stage}: missing param {missing[0]!r} ({_type_name(spec[missing[0]])}: "
                         f"{spec[missing[0]].help})")
    for name, value in params.items():
        if not _fits(value, spec[name]):
            raise ParamError(f"{stage}: param {name!r} must be {_type_name(spec[name])}, got {value!r}")
    return {**{n: p.default for n, p in spec.items() if p.default is not REQUIRED}, **params}


def _fits(value, param: Param) -> bool:
    if value is None:
        return param.default is None or type(None) in _types(param)
    for t in _types(param):
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


def _types(param: Param) -> tuple:
    return param.type if isinstance(param.type, tuple) else (param.type,)


def _type_name(param: Param) -> str:
    names = [t.__name__ for t in _types(param) if t is not type(None)]
    return " or ".join(names) + (" or null" if param.default is None or type(None) in _types(param) else "")


def describe(spec: dict[str, Param]) -> str:
    """The parameter table of `wsss <stage> --help`: name, type, default (or "required"), help."""
    width = max((len(n) for n in spec), default=0)
    lines = []
    for name, p in spec.items():
        default = "required" if p.default is REQUIRED else f"default {p.default!r}"
        lines.append(f"  {name:<{width}}  {_type_name(p)}, {default}. {p.help}".rstrip())
    return "\n".join(lines)
