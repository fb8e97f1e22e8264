"""Every host's options for one nornir run, each distinct piece of inventory data checked once.

A subnet inventory makes thousands of hosts whose ``portscan`` data is the same (each host
holds its own copy of its subnet entry's data) and that differ only in their address.
``resolve_options`` per host would parse and validate the same ports, expectations and
settings thousands of times and plan the same scan again for each: here a host whose
data equals one seen before takes that host's options, and only its own address is
parsed and checked against the scope. Anything that fails takes ``resolve_options``
itself, so every message is the one a host resolved alone would get.

A host whose hostname is a literal address comes out as ``Addressed``: the shared options
and its address, and no plan of its own, since it joins a merged plan (merged.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

from nornir.core.inventory import Host

from ...engine.core.plan import retarget
from ...errors import PortscanError
from ...inputs.scope import in_networks
from ...inputs.targets import Target, TargetSpec, literal_target, parse_target
from .options import DATA_KEY, ScanOptions, resolve_options

#: What a host's data and the run's arguments settle: the options, and whether the targets
#: were given (else they are the host's own address, and the options are a template).
_Known = tuple[ScanOptions, bool]


class Addressed(NamedTuple):
    """A host that scans its own literal address with options other hosts share."""

    options: ScanOptions  # the shared options: their targets and plan are another host's
    target: Target
    loopback: bool  # beyond loopback a default rate applies (plan_scan), so plans differ


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _frozen(value: Any) -> Hashable:
    """A hashable copy of plain data; the type is kept, so that 1, 1.0 and True differ."""
    kind = type(value)
    if kind in _LEAVES:
        return (kind, value)
    if isinstance(value, Mapping):
        return (kind, tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return (kind, tuple(_frozen(v) for v in value))
    hash(value)  # TypeError: not cacheable, resolved alone
    return (kind, value)


def _portscan_layers(host: Host) -> list[Any]:
    """The host's ``portscan`` mappings, most specific first (as ``options._layers``)."""
    layers = [host.data.get(DATA_KEY)]
    if host.groups:
        layers += [g.data.get(DATA_KEY) for g in host.extended_groups()]
    layers.append(host.defaults.data.get(DATA_KEY))
    return [data for data in layers if data is not None]


def _targets_given(layers: list[Any], args: Mapping[str, Any]) -> bool:
    if args.get("targets") is not None:
        return True
    for data in layers:
        if "targets" in data:  # a null stops the search, as it does in resolve_options
            return data["targets"] is not None
    return False


class RunOptions:
    """``resolve_options`` for the hosts of one run: the same ``args`` and run settings."""

    def __init__(self, args: Mapping[str, Any], run: Mapping[str, Any],
                 with_baseline: bool = True) -> None:
        self.args, self.run, self.with_baseline = args, run, with_baseline
        self._known: dict[Hashable, _Known] = {}
        #: frozen forms of layers many hosts share (a group's, the defaults'), by identity;
        #: the objects are kept, so an id is not reused while the run lasts
        self._shared: dict[int, tuple[Any, Hashable]] = {}

    def _key(self, host: Host) -> tuple[list[Any], Hashable]:
        layers = _portscan_layers(host)
        key: list[Hashable] = [_frozen(layers[0])] if layers else []
        for data in layers[1:]:
            seen = self._shared.get(id(data))
            if seen is None or seen[0] is not data:
                seen = self._shared[id(data)] = (data, _frozen(data))
            key.append(seen[1])
        return layers, tuple(key)

    def _alone(self, host: Host) -> ScanOptions:
        return resolve_options(host, self.args, run=self.run, with_baseline=self.with_baseline)

    def resolve(self, host: Host) -> ScanOptions:
        """The host's options, as ``resolve_options`` gives them."""
        try:
            layers, key = self._key(host)
        except (TypeError, AttributeError):  # data that is not plain: resolved alone
            return self._alone(host)
        known = self._known.get(key)
        if known is None:
            options = self._alone(host)
            if all(isinstance(data, Mapping) for data in layers):
                self._known[key] = (options, _targets_given(layers, self.args))
            return options
        options, given = known
        if given:
            return options
        try:
            return self._addressed(host, options)
        except (PortscanError, ValueError):  # the exact message, from the host alone
            return self._alone(host)

    def resolve_lean(self, host: Host) -> ScanOptions | Addressed:
        """``resolve``, or for a host scanning its own literal address with options seen
        before, those options and the address (no plan: it joins a merged one)."""
        try:
            known = self._known.get(self._key(host)[1])
        except (TypeError, AttributeError):
            known = None
        if known is not None and not known[1]:
            options = known[0]
            plan = options.plan
            target = literal_target(host.hostname or host.name)
            if (plan is not None and target is not None and plan.max_addresses >= 1
                    and (not plan.options.allowed
                         or in_networks(target[0].address or "", plan.options.allowed))):
                return Addressed(options, *target)
        return self.resolve(host)

    def full(self, host: Host, resolved: ScanOptions | Addressed) -> ScanOptions:
        """A host's own options, with its own plan."""
        if isinstance(resolved, Addressed):
            return self.resolve(host)
        return resolved

    def _addressed(self, host: Host, template: ScanOptions) -> ScanOptions:
        """The template's scan of this host's own address (its hostname, or its name)."""
        address = host.hostname or host.name
        if template.plan is None or not address.isprintable() or any(
                c in address for c in " ,"):  # a list, not one target: resolved alone
            raise ValueError(address)
        spec = TargetSpec([parse_target(address)])
        return dataclasses.replace(template, targets=(address,),
                                   plan=retarget(template.plan, spec))
