"""A persistent on-disk numba cache for pynndescent's NN-descent kernels.

pynndescent compiles `nn_descent` (and what it calls) in every process: it has no
`cache=True`, and numba could not cache it anyway, for two reasons:

1. `numba.get_num_threads()` inside jitted code is lowered as a call through a
   ctypes function pointer, whose address is embedded in the machine code (a
   "dynamic global"); numba refuses to cache any function that links it.
2. `dist` is passed as an argument of type `types.Dispatcher`, a type that is
   equal only to itself in the process that made it: an index written by one
   process never matches the signature in the next one.

`enable_pynndescent_cache()` removes both: `get_num_threads()` in jitted code calls
the threading layer's `get_num_threads` by symbol (as numba's own parfors do), and
pynndescent's uncached module-level dispatchers get a cache whose index names a
Dispatcher argument by module, qualname and bytecode instead of by object. The
cache lives in `$XDG_CACHE_HOME/katdensity/numba/<key>` (`~/.cache/...`), where
`<key>` hashes the Python, numba, llvmlite and pynndescent versions and the
content of every pynndescent source file.

It leans on numba internals, so it is switched on only for the numba and pynndescent
minor versions it was tested with (`SUPPORTED`), and `KATDENSITY_NUMBA_CACHE=0` switches it
off; any failure leaves pynndescent compiling as usual.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import logging
import os
import sys
import threading
from pathlib import Path

from llvmlite import ir
from numba import njit, types
from numba.core import caching, sigutils
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic
from numba.np.ufunc import parallel

__all__ = ["SUPPORTED", "enable_pynndescent_cache"]

logger = logging.getLogger(__name__)

# (numba, pynndescent) minor versions whose internals this was written and tested against.
SUPPORTED = {("0.68", "0.7")}

_lock = threading.Lock()
_state: dict[str, object] = {}

# Modules whose functions may be passed as Dispatcher arguments to a cached function:
# their code is part of the cache key (the hash of pynndescent's sources).
_TRUSTED_PREFIX = "pynndescent."
_DISPATCHER_ARG = "katdensity:dispatcher-arg"


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "katdensity" / "numba"


def _versioned_dir(root: Path, pynndescent_module) -> Path:
    import llvmlite
    import numba
    import numpy

    digest = hashlib.sha256()
    for part in (sys.version, numba.__version__, llvmlite.__version__, numpy.__version__):
        digest.update(part.encode() + b"\0")
    package = Path(pynndescent_module.__file__).parent
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    version = importlib.metadata.version("pynndescent")
    return root / f"pynndescent-{version}-numba-{numba.__version__}-{digest.hexdigest()[:16]}"


class _UncacheableError(Exception):
    """A signature this cache does not key (it is then compiled as usual)."""


@intrinsic
def _symbol_get_num_threads(typingctx):
    def codegen(context, builder, signature, args):
        # The symbol exists once the threading layer is launched: every library
        # linking this (and every cache load of one) launches it first, as with parfors.
        context.active_code_library._reload_init.add(parallel._launch_threads)
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = builder.module.globals.get("get_num_threads")
        if fn is None:
            fn = ir.Function(builder.module, fnty, "get_num_threads")
        return builder.call(builder.bitcast(fn, fnty.as_pointer()), [])

    # int32, as from the ctypes pointer numba uses (CFUNCTYPE(c_int)).
    return types.int32(), codegen


@njit
def _get_num_threads():
    """numba.np.ufunc.parallel._get_num_threads by symbol: callable from Python
    and from jitted code, where it leaves no address in the machine code."""
    return _symbol_get_num_threads()


class _Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    root = ""  # set by enable_pynndescent_cache

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(self.root, self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]  # noqa: RUF012 (numba's attribute)

    def check_cachable(self, cres):  # silently, where numba's warns
        return not cres.library.has_dynamic_globals and all(x.can_cache for x in cres.lifted)


class _DataFile(caching.IndexDataCacheFile):
    """Data files named by a hash of their key rather than by a counter, so two
    processes adding different signatures at once cannot write the same file."""

    def save(self, key, data):
        name = self._data_name(int(hashlib.sha256(repr(key).encode()).hexdigest()[:12], 16))
        self._save_data(name, data)
        overloads = self._load_index()
        if overloads.get(key) != name:
            overloads[key] = name
            self._save_index(overloads)


def _stable_arg(ty):
    if isinstance(ty, types.Dispatcher):
        func = ty.dispatcher.py_func
        module = sys.modules.get(func.__module__)
        if (
            not func.__module__.startswith(_TRUSTED_PREFIX)
            or func.__closure__ is not None
            or getattr(module, func.__qualname__, None) is not ty.dispatcher
        ):
            raise _UncacheableError(str(ty))
        code = hashlib.sha256(func.__code__.co_code).hexdigest()
        return (_DISPATCHER_ARG, func.__module__, func.__qualname__, code)
    if "Dispatcher(" in str(ty):  # one nested in another type
        raise _UncacheableError(str(ty))
    return ty


def _placeholders(argtypes):
    return tuple(_DISPATCHER_ARG if isinstance(t, types.Dispatcher) else t for t in argtypes)


def _restore(stored_types, live_types):
    if len(stored_types) != len(live_types):
        raise _UncacheableError("arity")
    out = []
    for stored, live in zip(stored_types, live_types, strict=True):
        if isinstance(stored, str) and stored == _DISPATCHER_ARG:
            if not isinstance(live, types.Dispatcher):
                raise _UncacheableError("kind")
            out.append(live)
        elif stored != live:
            raise _UncacheableError("signature")
        else:
            out.append(stored)
    return tuple(out)


class _Cache(caching.FunctionCache):
    """numba's FunctionCache, keyed on what a Dispatcher argument is, not on which."""

    _impl_class = _Impl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file.__class__ = _DataFile

    def _index_key(self, sig, codegen):
        args, _ = sigutils.normalize_signature(sig)
        return super()._index_key(tuple(_stable_arg(t) for t in args), codegen)

    def _load_overload(self, sig, target_context):
        if not self._enabled:
            return None
        try:
            return self._load(sig, target_context)
        except Exception:  # (unreadable or damaged entry: compile instead)
            logger.debug("numba cache entry not loaded for %s", self._name, exc_info=True)
            return None

    def _load(self, sig, target_context):
        try:
            data = self._cache_file.load(self._index_key(sig, target_context.codegen()))
            if data is None:
                return None
            # data is CompileResult._reduce(): (libdata, fndesc, env, signature, ...)
            args, _ = sigutils.normalize_signature(sig)
            data = list(data)
            data[3] = data[3].replace(args=_restore(data[3].args, args))
            data[1].argtypes = _restore(data[1].argtypes, args)
        except _UncacheableError:
            return None
        cres = self._impl.rebuild(target_context, tuple(data))
        # numba does not put these back on a loaded library: without them, a caller
        # compiled later and linking it would not launch the threading layer on load.
        cres.library._reload_init.update(cres.reload_init)
        return cres

    def _save_overload(self, sig, cres):
        if not self._enabled or not self._impl.check_cachable(cres):
            return
        try:
            self._save(sig, cres)
        except Exception:  # (read-only or full disk: stay uncached)
            logger.debug("numba cache entry not saved for %s", self._name, exc_info=True)

    def _save(self, sig, cres):
        try:
            key = self._index_key(sig, cres.codegen)
        except _UncacheableError:
            return
        fndesc = copy.copy(cres.fndesc)
        fndesc.argtypes = _placeholders(fndesc.argtypes)
        stored = cres._replace(
            fndesc=fndesc, signature=cres.signature.replace(args=_placeholders(cres.signature.args))
        )
        self._impl.locator.ensure_cache_path()
        self._cache_file.save(key, self._impl.reduce(stored))


def _attach(value, module_name):
    if (
        isinstance(value, Dispatcher)
        and getattr(value.py_func, "__module__", None) == module_name
        and isinstance(value._cache, caching.NullCache)
    ):
        try:
            value._cache = _Cache(value.py_func)
        except Exception:  # (e.g. no writable cache directory)
            logger.debug("no numba cache for %s", value, exc_info=True)
            return False
        return True
    return False


def _supported() -> bool:
    numba_version = importlib.metadata.version("numba")
    pynndescent_version = importlib.metadata.version("pynndescent")
    minor = (".".join(numba_version.split(".")[:2]), ".".join(pynndescent_version.split(".")[:2]))
    return minor in SUPPORTED and os.environ.get("KATDENSITY_NUMBA_CACHE", "1") != "0"


def enable_pynndescent_cache(cache_root: str | os.PathLike[str] | None = None) -> bool:
    """Import pynndescent and make its NN-descent kernels load from a disk cache.

    Safe to call more than once and from several threads; returns whether the cache
    is in use. Any failure leaves pynndescent compiling as usual (logged at debug).
    """
    with _lock:
        if "enabled" in _state:
            return bool(_state["enabled"])
        _state["enabled"] = False
        if not _supported():
            return False
        try:
            import pynndescent  # its import may change the threading layer

            cache_dir = _versioned_dir(Path(cache_root or default_cache_root()), pynndescent)
            cache_dir.mkdir(parents=True, exist_ok=True)
            _Locator.root = str(cache_dir)
            attached = [
                f"{name}.{value.py_func.__qualname__}"
                for name, module in sorted(sys.modules.items())
                if name == "pynndescent" or name.startswith(_TRUSTED_PREFIX)
                for value in list(vars(module).values())
                if _attach(value, name)
            ]
            _attach(_get_num_threads, __name__)
            parallel._launch_threads()  # sets parallel._get_num_threads, replaced next
            if _get_num_threads() != parallel._get_num_threads():  # compiles or loads it
                raise RuntimeError("get_num_threads by symbol disagrees with numba's")
            parallel._get_num_threads = _get_num_threads
            logger.debug("numba cache for %d pynndescent functions in %s", len(attached), cache_dir)
            _state["enabled"] = True
        except Exception:  # (an optional speed-up: never fail the caller)
            logger.debug("pynndescent's numba cache is not in use", exc_info=True)
        return bool(_state["enabled"])
