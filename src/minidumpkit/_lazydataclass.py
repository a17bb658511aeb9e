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

__all__ = ["LazyDataclass", "LazySpec", "lazy_dataclass", "make_dataclass_now"]

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

    __slots__ = ("names", "defaults", "hidden", "eq", "annotations", "own")

    def __init__(self, names: tuple[str, ...], defaults: dict[str, Any],
                 hidden: frozenset[str], eq: bool, annotations: dict[str, Any],
                 own: frozenset[str] = frozenset()) -> None:
        self.names = names
        self.defaults = defaults  # field name -> default value
        self.hidden = hidden  # fields left out of repr()
        self.eq = eq
        self.annotations = annotations
        # methods the class defines itself: kept, as dataclasses keeps a class's own
        # __repr__ (and __eq__/__hash__ under the same rules)
        self.own = own


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
            repr_ = name not in spec.hidden
            if default is not _NO_DEFAULT:
                namespace[name] = dataclasses.field(default=default, repr=repr_)
            elif not repr_:
                namespace[name] = dataclasses.field(repr=False)
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
        hidden = set(cls.__lazy_hidden__)
        for klass in reversed(cls.__mro__[1:]):  # inherited fields first, as dataclasses does
            spec = klass.__dict__.get("__lazy_spec__")
            if spec is not None:
                annotations.update(spec.annotations)
                defaults.update(spec.defaults)
                hidden |= spec.hidden
        given = cls.__dict__.get("__lazy_defaults__", {})  # lazy_dataclass moved them here
        for name, ann in own.items():
            annotations[name] = ann
            if name in given:
                defaults[name] = given[name]
            elif name in cls.__dict__ and not isinstance(cls.__dict__[name], MemberDescriptorType):
                defaults[name] = cls.__dict__[name]
        names = tuple(annotations)
        for before, after in zip(names, names[1:]):
            if before in defaults and after not in defaults:
                raise TypeError(f"{cls.__qualname__}: field {after!r} without a default "
                                f"follows one with a default")
        own_methods = frozenset(m for m in ("__repr__", "__eq__", "__hash__")
                                if m in cls.__dict__)
        cls.__lazy_spec__ = LazySpec(names, defaults, frozenset(hidden), cls.__lazy_eq__,
                                     annotations, own_methods)
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
        values = dict(zip(spec.names, args))
        for name, value in kwargs.items():
            if name not in spec.names or name in values:
                how = "multiple values for" if name in values else "an unexpected keyword"
                raise TypeError(f"{cls.__name__}() got {how} argument {name!r}")
            values[name] = value
        setter = object.__setattr__
        for name in spec.names:
            value = values.get(name, _NO_DEFAULT)
            if value is _NO_DEFAULT:
                value = spec.defaults.get(name, _NO_DEFAULT)
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
