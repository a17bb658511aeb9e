"""Records and reader views behave as the frozen dataclasses they stand for.

Their dataclass methods are generated on first use (minidumpkit._lazydataclass); each
check compares one with the same class made by ``dataclasses.dataclass`` itself, the
reference implementation, before and after the methods are generated. The generic
``__init__`` used while :mod:`dataclasses` is not imported is checked in a fresh
interpreter (this one has imported it).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from minidumpkit import _streams as s
from minidumpkit import format as md
from minidumpkit._lazydataclass import LazyDataclass, field, lazy_dataclass, replace


def fresh_lazy_classes() -> tuple[Any, Any, Any]:
    """A record, a slotted view with a default and a hidden field, and an eq=False
    view, none of them generated yet."""

    class Pair(md.Record):
        low: md.U32
        high: md.U64

    @lazy_dataclass(hidden=("secret",))
    class View:
        name: str
        secret: bytes
        size: int = 7

    @lazy_dataclass(eq=False)
    class Ident:
        value: int

    return Pair, View, Ident


@dataclasses.dataclass(frozen=True)
class RefPair:
    low: int
    high: int


@dataclasses.dataclass(frozen=True, slots=True)
class RefView:
    name: str
    secret: bytes = dataclasses.field(repr=False)
    size: int = 7


def test_not_generated_at_class_creation() -> None:
    pair, view, _ = fresh_lazy_classes()
    assert "__dataclass_fields__" not in vars(pair)
    assert "__dataclass_fields__" not in vars(view)
    assert pair.SIZE == 12 and pair(1, 2).pack() == b"\x01\0\0\0\x02" + bytes(7)


def test_behaves_like_dataclasses_dataclass() -> None:
    pair, view, ident = fresh_lazy_classes()
    p, r = pair(1, high=2), RefPair(1, high=2)
    assert repr(p) == repr(r).replace("RefPair", pair.__qualname__)
    assert p == pair(1, 2) and p != pair(1, 3) and hash(p) == hash(pair(1, 2))
    assert hash(p) == hash(r)  # both hash the tuple of the fields
    assert [f.name for f in dataclasses.fields(p)] == [f.name for f in dataclasses.fields(r)]
    assert dataclasses.asdict(p) == dataclasses.asdict(r)
    assert dataclasses.replace(p, high=9) == pair(1, 9)
    assert pair.__match_args__ == RefPair.__match_args__
    match p:
        case pair(low, high):
            assert (low, high) == (1, 2)

    v, rv = view("a", b"k"), RefView("a", b"k")
    assert repr(v) == repr(rv).replace("RefView", view.__qualname__)  # secret hidden
    assert v.size == 7 and v == view("a", b"k", 7)
    assert not hasattr(v, "__dict__") and view.__slots__ == ("name", "secret", "size")
    i = ident(1)
    assert i != ident(1) and i == i and hash(i) == object.__hash__(i)


def test_a_class_keeps_its_own_repr_as_dataclasses_does() -> None:
    """dataclasses.dataclass leaves a __repr__ the class defines; so does the lazy one,
    before and after its methods are generated (the reader's views have short reprs)."""

    @dataclasses.dataclass(frozen=True)
    class Ref:
        value: int

        def __repr__(self) -> str:
            return f"<Ref {self.value:#x}>"

    @lazy_dataclass
    class Own:
        value: int

        def __repr__(self) -> str:
            return f"<Own {self.value:#x}>"

    class OwnRecord(md.Record):
        low: md.U32

        def __repr__(self) -> str:
            return f"<OwnRecord {self.low:#x}>"

    assert repr(Ref(255)) == "<Ref 0xff>"
    assert repr(Own(255)) == "<Own 0xff>" and repr(OwnRecord(255)) == "<OwnRecord 0xff>"
    assert [f.name for f in dataclasses.fields(Own)] == ["value"]  # generated now
    assert [f.name for f in dataclasses.fields(OwnRecord)] == ["low"]
    assert repr(Own(255)) == "<Own 0xff>" and repr(OwnRecord(255)) == "<OwnRecord 0xff>"
    assert Own(1) == Own(1) and OwnRecord(1) == OwnRecord(1)  # the rest is generated


@pytest.mark.parametrize("generated", [False, True])
def test_frozen_like_a_dataclass(generated: bool) -> None:
    pair, view, _ = fresh_lazy_classes()
    p, v = pair(1, 2), view("a", b"k")
    if generated:
        repr(p), repr(v)
    for obj in (p, v):
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.name = "x"
        with pytest.raises(dataclasses.FrozenInstanceError):
            del obj.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        RefView("a", b"k").name = "x"  # type: ignore[misc]  # the reference agrees


def test_argument_errors_like_a_dataclass() -> None:
    pair, _, _ = fresh_lazy_classes()
    for bad in ((1,), (1, 2, 3)):
        with pytest.raises(TypeError):
            pair(*bad)
    with pytest.raises(TypeError):
        pair(1, 2, low=1)
    with pytest.raises(TypeError):
        pair(1, nope=2)


def test_pickle_and_copy_round_trip() -> None:
    pair, _, _ = fresh_lazy_classes()
    del pair  # local classes cannot be pickled: use the module's
    ctx = dataclasses.replace(md.ContextAMD64.zero(), rip=0x1234)
    rng = s.MemoryRange(0x1000, 0x2000, 0x40)
    for obj in (ctx, rng, md.Location(3, 4)):
        assert pickle.loads(pickle.dumps(obj)) == obj
        assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj


def test_first_use_from_many_threads_at_once() -> None:
    pair, view, _ = fresh_lazy_classes()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        try:
            barrier.wait()
            assert repr(pair(1, 2)) == f"{pair.__qualname__}(low=1, high=2)"
            assert view("a", b"k") == view("a", b"k")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_every_record_and_view_is_a_dataclass() -> None:
    records = [c for c in vars(md).values()
               if isinstance(c, type) and issubclass(c, md.Record) and c is not md.Record]
    views = [c for c in vars(s).values() if isinstance(c, type) and issubclass(c, LazyDataclass)]
    assert len(records) > 40 and len(views) == 25  # ThreadState; MinidumpkitPython; Crashpad and Breakpad info
    for cls in records + views:
        assert dataclasses.is_dataclass(cls), cls
    for cls in records:  # the struct layout follows the dataclass fields
        assert [f.name for f in dataclasses.fields(cls)] == [n for n, _ in cls._layout]


def test_a_record_field_without_a_struct_code_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Bad\.x: annotate with a struct code"):
        class Bad(md.Record):
            x: int


def test_generic_init_without_dataclasses_imported() -> None:
    """In a process that never imported dataclasses, the stand-in __init__ binds
    arguments as the generated one would, and refuses what it would refuse."""
    code = textwrap.dedent("""
        import json, sys
        from minidumpkit import format as md, _streams as s
        out = {}
        loc = md.Location(1, rva=2)
        h = s.Handle(1, "File", None, 0, 0, 1, 1)
        out["fields"] = [loc.data_size, loc.rva, h.object_info_rva, h.handle_count]
        errors = []
        for args, kwargs in (((1,), {}), ((1, 2, 3), {}), ((1,), {"data_size": 1}),
                             ((1, 2), {"nope": 3})):
            try:
                md.Location(*args, **kwargs)
            except TypeError as exc:
                errors.append(str(exc))
        out["errors"] = errors
        out["loaded"] = "dataclasses" in sys.modules
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["loaded"] is False
    assert out["fields"] == [1, 2, None, 1]
    assert len(out["errors"]) == 4
    assert "missing required argument: 'rva'" in out["errors"][0]
    assert "takes 2 positional arguments but 3 were given" in out["errors"][1]
    assert "multiple values for argument 'data_size'" in out["errors"][2]
    assert "unexpected keyword argument 'nope'" in out["errors"][3]


def test_a_subclass_without_fields_of_its_own_is_the_same_dataclass() -> None:
    pair, _, _ = fresh_lazy_classes()

    class Sub(pair):  # type: ignore[misc,valid-type]
        def total(self) -> int:
            return int(self.low + self.high)

    @dataclasses.dataclass(frozen=True)
    class RefSub(RefPair):
        pass

    sub = Sub(1, 2)
    assert sub.total() == 3 and sub.pack() == pair(1, 2).pack()
    assert repr(sub) == repr(RefSub(1, 2)).replace("test_a_subclass_without_fields_of_its_own_is_"
                                                   "the_same_dataclass.<locals>.RefSub",
                                                   Sub.__qualname__)
    assert [f.name for f in dataclasses.fields(Sub)] == ["low", "high"]
    assert dataclasses.replace(sub, high=5).total() == 6


@dataclasses.dataclass(frozen=True, slots=True)
class RefFramed:
    pc: int
    extra: dict[str, int] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    note: str = ""


def test_field_options_and_replace_like_dataclasses() -> None:
    """``field(default_factory=, repr=, compare=)`` and ``replace`` (the analysis layer's
    frames and waits use them) agree with dataclasses', before and after generation."""

    @lazy_dataclass
    class Framed:
        pc: int
        extra: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
        note: str = ""

    a, ref = Framed(1), RefFramed(1)
    assert a.extra == {} and a.extra is not Framed(1).extra  # a new dict each time
    assert replace(a, note="n").note == "n" and replace(a, note="n").pc == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        replace(a, nope=1)
    b = Framed(1, {"rip": 2}, "")
    assert a == b and hash(a) == hash(b)  # extra is not compared, as in the reference
    assert RefFramed(1) == RefFramed(1, {"rip": 2}) and hash(ref) == hash(a)
    assert repr(a) == repr(ref).replace("RefFramed", Framed.__qualname__)  # extra hidden
    fields = {f.name: (f.repr, f.compare) for f in dataclasses.fields(Framed)}
    assert fields == {f.name: (f.repr, f.compare) for f in dataclasses.fields(RefFramed)}
    assert dataclasses.replace(b, pc=3).extra == {"rip": 2}


def test_field_and_replace_without_dataclasses_imported() -> None:
    code = textwrap.dedent("""
        import json, sys
        from minidumpkit._lazydataclass import field, lazy_dataclass, replace

        @lazy_dataclass
        class Framed:
            pc: int
            extra: dict = field(default_factory=dict, repr=False, compare=False)
            note: str = ""

        a = Framed(1)
        b = replace(a, note="n")
        errors = []
        try:
            Framed()
        except TypeError as exc:
            errors.append(str(exc))
        print(json.dumps({"a": [a.pc, a.extra, a.note], "b": [b.pc, b.note],
                          "fresh": a.extra is not Framed(2).extra, "errors": errors,
                          "loaded": "dataclasses" in sys.modules}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "a": [1, {}, ""], "b": [1, "n"], "fresh": True, "loaded": False,
        "errors": ["Framed() missing required argument: 'pc'"]}
