"""Sizes and Kubernetes quantities as the config writes them, on Dask's and Kubernetes' own parsers.

* A size (``memory_per_worker``, ``max_bytes_per_transaction``) is ``4GiB``/``4Gi`` (powers of 2),
  ``4GB``/``4G`` (powers of 10) or plain bytes: exactly the units of `dask.utils.parse_bytes`. The wrapper
  adds what a config needs on top: a number is required (Dask reads ``"GiB"`` as 1 GiB), the size must be
  at least one byte (Dask returns negative and zero sizes), booleans and floats are refused, and the
  message says what is expected.
* A Kubernetes memory quantity (``8Gi``) keeps Kubernetes' syntax; ``8GiB`` and ``8GB`` are rewritten
  as ``8Gi`` and ``8G``. Its value, and a CPU quantity's (``500m``), come from
  `kubernetes.utils.parse_quantity`.

Sizes are shown to people with `dask.utils.format_bytes` (``1.50 GiB``), everywhere in qdask.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

import dask.utils
from pydantic import AfterValidator, Field

__all__ = [
    "Bytes",
    "CpuQuantity",
    "MemoryQuantity",
    "cpu_cores",
    "k8s_cpu",
    "k8s_memory",
    "memory_bytes",
    "parse_bytes",
    "parse_bytes_field",
    "quantity_value",
]

_SIZE_EXAMPLES = "expected e.g. '4GiB', '512MiB', '4Gi', '8GB' or bytes"


def parse_bytes(value: int | str) -> int:
    """Bytes from ``4GiB``/``4Gi`` (2**30 based), ``4GB``/``4G`` (10**9 based) or a plain integer (≥ 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size such as '4GiB', got {type(value).__name__}")
    if isinstance(value, str):
        if not any(ch.isdigit() for ch in value):
            raise ValueError(f"{value!r} is not a size: {_SIZE_EXAMPLES}")
        try:
            number = dask.utils.parse_bytes(value.strip())
        except (ValueError, OverflowError):  # unknown unit, not a number, inf/nan
            raise ValueError(f"{value!r} is not a size: {_SIZE_EXAMPLES}") from None
    else:
        number = value
    if number < 1:
        raise ValueError(f"expected a positive size, got {value!r}")
    return number


def parse_bytes_field(value: Any) -> Any:
    """A pydantic before-validator: sizes written as text or integers become bytes; anything else is left
    for the field's own type check to refuse."""
    return parse_bytes(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else value


Bytes = Annotated[int, Field(gt=0)]

# Kubernetes' quantity suffixes qdask accepts for memory (no milli-bytes), and the config's byte units
# that name the same multiplier.
_K8S_MEMORY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?\Z")
_SIZE_AS_K8S_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGTP])iB|([kKMGTP])B)\Z")
_K8S_CPU_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?m?\Z")


def quantity_value(quantity: str) -> Decimal:
    """The number a Kubernetes quantity stands for (``8Gi`` → 8589934592, ``500m`` → 0.5)."""
    from kubernetes.utils import parse_quantity  # imports the Kubernetes client: only when needed

    value: Decimal = parse_quantity(quantity)
    return value


def k8s_memory(value: int | str) -> str:
    """A Kubernetes memory quantity (``8Gi``) from a size; ``8GiB``/``8GB`` become ``8Gi``/``8G``."""
    if isinstance(value, str):
        text = value.strip()
        quantity = text if _K8S_MEMORY_RE.match(text) else None
        if quantity is None and (m := _SIZE_AS_K8S_RE.match(text)):
            quantity = f"{m[1]}{m[2]}i" if m[2] else m[1] + m[3].replace("K", "k")
        if quantity is not None:
            if quantity_value(quantity) < 1:
                raise ValueError(f"expected a positive memory quantity, got {value!r}")
            return quantity
    return str(parse_bytes(value))


def k8s_cpu(value: int | float | str) -> str:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``500m``), positive."""
    text = str(value).strip()
    if isinstance(value, bool) or not _K8S_CPU_RE.match(text) or quantity_value(text) <= 0:
        raise ValueError(f"{value!r} is not a CPU quantity: expected e.g. 2, 1.5 or 500m")
    return text


def cpu_cores(quantity: str) -> float:
    """Cores in a Kubernetes CPU quantity (``500m`` → 0.5)."""
    return float(quantity_value(quantity))


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity (``8Gi`` → 8589934592)."""
    return int(quantity_value(quantity))


MemoryQuantity = Annotated[str, Field(description="Kubernetes memory quantity"), AfterValidator(k8s_memory)]
CpuQuantity = Annotated[str | int | float, AfterValidator(k8s_cpu)]
