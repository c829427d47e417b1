"""Dagster run config derived from the engine's settings dataclasses, so the two cannot drift apart.

A field added to, renamed in or re-defaulted in ``OptimisationConfig`` or ``Limits`` shows up in
the launchpad as it is; the Dagster layer adds only what is its own (which allocation to trade).
"""

from __future__ import annotations

import dataclasses
import types
import typing

import dagster as dg
from pydantic import create_model


def _config_type(tp):
    """``tp`` as Dagster config can hold it: tuples become lists (config has no tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return list[_config_type(args[0])]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_config_type(a) for a in args)]
    return tp


def config_from_dataclass(cls, *, exclude: tuple[str, ...] = ()) -> type[dg.Config]:
    """A ``dg.Config`` base with the fields of the dataclass ``cls`` (types and defaults), minus ``exclude``."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has no plain default; exclude it or give it one")
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        fields[f.name] = (_config_type(hints[f.name]), default)
    return create_model(f"{cls.__name__}Fields", __base__=dg.Config, **fields)


def dataclass_from_config(cls, config: dg.Config, **extra):
    """``cls`` built from the fields of ``config`` it declares (lists back to tuples), plus ``extra``."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(config, f.name):
            value = getattr(config, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **extra)
