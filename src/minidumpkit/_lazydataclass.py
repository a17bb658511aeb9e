"""Frozen dataclasses whose methods are generated on first use, not at import.

``dataclasses.dataclass`` compiles ``__init__``, ``__repr__``, ``__eq__``... for each
class with ``exec``: about a millisecond per class, plus importing :mod:`dataclasses`
(which imports :mod:`inspect`). The MDMP records and the reader's views are about
sixty classes, which made ``import minidumpkit.format`` cost 75-130 ms and every
``minidumpkit info`` pay it. Here each class stays a real frozen dataclass to
anyone who asks (``dataclasses.fields``, ``replace``, ``asdict``, ``is_dataclass``,
``match``): asking for one of those, or calling ``repr``/``==``/``hash``, generates the
dataclass methods for that class, once. Until then, and while :mod:`dataclasses` has
not been imported by anyone, ``__init__`` binds its arguments generically.

Every class deriving from :class:`LazyDataclass` is frozen. The generated methods
come from ``dataclasses.dataclass`` itself, applied to a twin class that has the
same annotations and field options, and are then set on the real class: the real
class may have ``__slots__``, which ``dataclasses`` can only honour by making a new
class, and a class object's identity must not change after import.
"""

from __future__ import annotations

import sys
from _thread import RLock
from collections.abc import Callable
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, dataclass_transform, overload

_T = TypeVar("_T")

__all__ = ["LazyDataclass", "LazySpec", "field", "lazy_dataclass", "make_dataclass_now",
           "replace"]

# Class attributes dataclasses looks up (fields(), replace(), is_dataclass(), asdict(),
# match statements): asking for one generates the dataclass.
_DATACLASS_ATTRS = frozenset({"__dataclass_fields__", "__dataclass_params__", "__match_args__"})
# What is copied from the twin onto the real class. __setattr__ and __delattr__ are
# not: LazyDataclass's own raise FrozenInstanceError, as a frozen dataclass's do.
_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__", *_DATACLASS_ATTRS)
_NO_DEFAULT = object()
_lock = RLock()  # two threads may generate the same class at once


class LazySpec:
    """What ``dataclasses.dataclass`` needs for one class, kept until it is called."""

    __slots__ = ("names", "defaults", "hidden", "eq", "annotations", "own", "factories",
                 "uncompared")

    def __init__(self, names: tuple[str, ...], defaults: dict[str, Any],
                 hidden: frozenset[str], eq: bool, annotations: dict[str, Any],
                 own: frozenset[str] = frozenset(),
                 factories: dict[str, Callable[[], Any]] | None = None,
                 uncompared: frozenset[str] = frozenset()) -> None:
        self.names = names
        self.defaults = defaults  # field name -> default value
        self.hidden = hidden  # fields left out of repr()
        self.eq = eq
        self.annotations = annotations
        # methods the class defines itself: kept, as dataclasses keeps a class's own
        # __repr__ (and __eq__/__hash__ under the same rules)
        self.own = own
        self.factories = factories or {}  # field name -> default_factory
        self.uncompared = uncompared  # fields left out of ==, hash() (compare=False)


class _Field:
    """What :func:`field` returns: a field's options, read when the class is made."""

    __slots__ = ("default", "default_factory", "repr", "compare")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None, repr: bool,
                 compare: bool) -> None:
        self.default, self.default_factory = default, default_factory
        self.repr, self.compare = repr, compare


def field(*, default: Any = _NO_DEFAULT, default_factory: Callable[[], Any] | None = None,
          repr: bool = True, compare: bool = True) -> Any:
    """``dataclasses.field`` for a :class:`LazyDataclass` (these four options only)."""
    if default is not _NO_DEFAULT and default_factory is not None:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr, compare)


def replace(obj: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace`` for a :class:`LazyDataclass` instance, without generating
    its dataclass (nor importing :mod:`dataclasses`)."""
    spec: LazySpec = type(obj).__lazy_spec__  # type: ignore[attr-defined]
    for name in changes:
        if name not in spec.names:
            raise TypeError(f"{type(obj).__name__}.__init__() got an unexpected keyword "
                            f"argument {name!r}")
    return type(obj)(*[changes[name] if name in changes else getattr(obj, name)
                       for name in spec.names])


def _spec_owner(cls: type) -> type | None:
    """The class whose fields ``cls`` has: itself, or the nearest base that declared
    fields (a subclass that adds none is the same dataclass)."""
    for klass in cls.__mro__:
        if "__lazy_spec__" in klass.__dict__:
            return klass
    return None


def make_dataclass_now(cls: type) -> None:
    """Generate the dataclass methods of ``cls`` (of the class whose fields it has)
    if not done yet."""
    owner = _spec_owner(cls)
    if owner is None:
        raise TypeError(f"{cls.__qualname__} has no dataclass fields")
    if "__dataclass_fields__" in owner.__dict__:
        return
    import dataclasses

    spec: LazySpec = owner.__dict__["__lazy_spec__"]
    with _lock:
        if "__dataclass_fields__" in owner.__dict__:
            return
        namespace: dict[str, Any] = {
            "__module__": owner.__module__, "__qualname__": owner.__qualname__,
            "__annotations__": spec.annotations, "__doc__": owner.__doc__,
        }
        for name in spec.names:
            default = spec.defaults.get(name, _NO_DEFAULT)
            options: dict[str, Any] = {}
            if default is not _NO_DEFAULT:
                options["default"] = default
            if name in spec.factories:
                options["default_factory"] = spec.factories[name]
            if name in spec.hidden:
                options["repr"] = False
            if name in spec.uncompared:
                options["compare"] = False
            if options:
                namespace[name] = dataclasses.field(**options)
        make = dataclasses.dataclass(frozen=True, eq=spec.eq)
        twin: type = make(type(owner.__name__, (), namespace))
        for attr in _GENERATED:
            if attr in twin.__dict__ and attr not in spec.own:
                setattr(owner, attr, twin.__dict__[attr])


class _LazyDataclassType(type):
    """Metaclass of :class:`LazyDataclass`: generates the dataclass when asked for it."""

    if not TYPE_CHECKING:  # to type checkers these are plain dataclasses
        def __getattr__(cls, name: str) -> Any:
            owner = _spec_owner(cls) if name in _DATACLASS_ATTRS else None
            if owner is not None:
                make_dataclass_now(owner)
                return owner.__dict__[name]
            raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


@dataclass_transform(frozen_default=True)
class LazyDataclass(metaclass=_LazyDataclassType):
    """Base of the lazily generated frozen dataclasses (see the module docstring).

    A subclass with its own annotations gets a ``__lazy_spec__``; the methods below
    stand in for the dataclass ones until those are generated.
    """

    __slots__ = ()
    __lazy_spec__: ClassVar[LazySpec]
    # Fields left out of repr() (dataclasses.field(repr=False)), named by a subclass.
    __lazy_hidden__: ClassVar[tuple[str, ...]] = ()
    __lazy_eq__: ClassVar[bool] = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        own = {name: ann for name, ann in cls.__dict__.get("__annotations__", {}).items()
               if not _is_classvar(ann)}
        if not own:
            return
        annotations: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        factories: dict[str, Callable[[], Any]] = {}
        hidden = set(cls.__lazy_hidden__)
        uncompared: set[str] = set()
        for klass in reversed(cls.__mro__[1:]):  # inherited fields first, as dataclasses does
            spec = klass.__dict__.get("__lazy_spec__")
            if spec is not None:
                annotations.update(spec.annotations)
                defaults.update(spec.defaults)
                factories.update(spec.factories)
                hidden |= spec.hidden
                uncompared |= spec.uncompared
        given = cls.__dict__.get("__lazy_defaults__", {})  # lazy_dataclass moved them here
        for name, ann in own.items():
            annotations[name] = ann
            value: Any = _NO_DEFAULT
            if name in given:
                value = given[name]
            elif name in cls.__dict__ and not isinstance(cls.__dict__[name], MemberDescriptorType):
                value = cls.__dict__[name]
            if isinstance(value, _Field):
                if not value.repr:
                    hidden.add(name)
                if not value.compare:
                    uncompared.add(name)
                if value.default_factory is not None:
                    factories[name] = value.default_factory
                options: _Field = value
                if cls.__dict__.get(name) is options:  # the class keeps the default alone
                    if options.default is _NO_DEFAULT:
                        delattr(cls, name)
                    else:
                        setattr(cls, name, options.default)
                value = value.default
            if value is not _NO_DEFAULT:
                defaults[name] = value
        names = tuple(annotations)
        has_default = defaults.keys() | factories.keys()
        for before, after in zip(names, names[1:]):
            if before in has_default and after not in has_default:
                raise TypeError(f"{cls.__qualname__}: field {after!r} without a default "
                                f"follows one with a default")
        own_methods = frozenset(m for m in ("__repr__", "__eq__", "__hash__")
                                if m in cls.__dict__)
        cls.__lazy_spec__ = LazySpec(names, defaults, frozenset(hidden), cls.__lazy_eq__,
                                     annotations, own_methods, factories,
                                     frozenset(uncompared))
        if not cls.__lazy_eq__:  # like dataclass(eq=False): identity equality and hash
            cls.__eq__ = object.__eq__  # type: ignore[method-assign]
            cls.__hash__ = object.__hash__  # type: ignore[method-assign]

    # --- stand-ins until the dataclass methods are generated ---

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if "dataclasses" in sys.modules:  # generating costs no import any more
            make_dataclass_now(cls)
            cls.__init__(self, *args, **kwargs)
            return
        spec: LazySpec = cls.__lazy_spec__
        if len(args) > len(spec.names):
            raise TypeError(f"{cls.__name__}() takes {len(spec.names)} positional arguments "
                            f"but {len(args)} were given")
        setter = object.__setattr__
        if not kwargs:  # the common case, kept short: records made by the thousand
            for name, value in zip(spec.names, args):
                setter(self, name, value)
            for name in spec.names[len(args):]:
                value = spec.defaults.get(name, _NO_DEFAULT)
                if value is _NO_DEFAULT:
                    if name not in spec.factories:
                        raise TypeError(f"{cls.__name__}() missing required argument: "
                                        f"{name!r}")
                    value = spec.factories[name]()
                setter(self, name, value)
            return
        values = dict(zip(spec.names, args))
        for name, value in kwargs.items():
            if name not in spec.names or name in values:
                how = "multiple values for" if name in values else "an unexpected keyword"
                raise TypeError(f"{cls.__name__}() got {how} argument {name!r}")
            values[name] = value
        for name in spec.names:
            value = values.get(name, _NO_DEFAULT)
            if value is _NO_DEFAULT:
                value = spec.defaults.get(name, _NO_DEFAULT)
                if value is _NO_DEFAULT and name in spec.factories:
                    value = spec.factories[name]()
                if value is _NO_DEFAULT:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            setter(self, name, value)

    def __repr__(self) -> str:
        make_dataclass_now(type(self))
        return type(self).__repr__(self)

    def __eq__(self, other: object) -> bool:
        make_dataclass_now(type(self))
        return type(self).__eq__(self, other)

    def __hash__(self) -> int:
        make_dataclass_now(type(self))
        return type(self).__hash__(self)

    def __setattr__(self, name: str, value: Any) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    # A frozen slotted object cannot be unpickled through __setattr__.
    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).__lazy_spec__.names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:  # dataclasses.fields(instance)
            if name in _DATACLASS_ATTRS:
                return getattr(type(self), name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


@overload
def lazy_dataclass(cls: type[_T], /) -> type[_T]: ...
@overload
def lazy_dataclass(*, eq: bool = True,
                   hidden: tuple[str, ...] = ()) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True)
def lazy_dataclass(cls: type[_T] | None = None, /, *, eq: bool = True,
                   hidden: tuple[str, ...] = ()) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Class decorator: ``cls`` as a slotted, frozen :class:`LazyDataclass`.

    The equivalent of ``@dataclass(frozen=True, slots=True, eq=eq)`` where the fields
    named in ``hidden`` are ``field(repr=False)``. Like dataclasses' ``slots=True``, it
    returns a new class (with ``__slots__``), made at import, before anyone holds the
    original.
    """
    def wrap(cls: type[_T]) -> type[_T]:
        if cls.__bases__ != (object,):
            raise TypeError(f"{cls.__qualname__}: lazy_dataclass takes a class with no bases")
        namespace = dict(cls.__dict__)
        names = [name for name, ann in namespace.get("__annotations__", {}).items()
                 if not _is_classvar(ann)]
        namespace["__lazy_defaults__"] = {n: namespace.pop(n) for n in names if n in namespace}
        namespace.pop("__dict__", None)
        namespace.pop("__weakref__", None)
        namespace["__slots__"] = tuple(names)
        namespace["__lazy_hidden__"] = hidden
        namespace["__lazy_eq__"] = eq
        made = _LazyDataclassType(cls.__name__, (LazyDataclass,), namespace)
        return cast("type[_T]", made)
    return wrap if cls is None else wrap(cls)
