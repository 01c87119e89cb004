"""nova's exceptions: messages, codes, the hierarchy under core's tree, duplicate columns."""

from __future__ import annotations

import inspect
import logging
import pickle
import re

import pytest

from dblayer.core import errors as core
from dblayer.core import pagination as core_pagination
from dblayer.stores.nova import exception as exc

NOVA_CLASSES = [
    value
    for value in vars(exc).values()
    if inspect.isclass(value)
    and issubclass(value, exc.NovaException)
    and value.__module__ == exc.__name__
]


# ---- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (exc.InstanceNotFound, {"instance_id": "abc"}, "Instance abc could not be found."),
        (exc.MarkerNotFound, {"marker": "m-1"}, "Marker m-1 could not be found."),
        (
            exc.ServiceBinaryExists,
            {"host": "h1", "binary": "nova-compute"},
            "A service with host h1 and binary nova-compute already exists.",
        ),
        (
            exc.UnexpectedTaskStateError,
            {"expected": ["spawning"], "actual": "deleting"},
            "Unexpected task state: expected ['spawning'] but the instance has deleting.",
        ),
        (exc.DuplicateVlan, {"vlan": 100}, "A network with vlan 100 already exists."),
        (exc.InvalidParameterValue, {"err": "bad tag filter"}, "bad tag filter"),
        (
            exc.SecurityGroupDefaultRuleNotFound,
            {"rule_id": 7},
            "Security group default rule 7 could not be found.",
        ),
        (
            exc.OverQuota,
            {"overs": ["cores", "ram"]},
            "Quota exceeded for resources: ['cores', 'ram'].",
        ),
        (exc.NoMoreFixedIps, {}, "No fixed IP addresses are left."),
        (exc.AdminRequired, {}, "The user does not have admin privileges."),
    ],
)
def test_message_is_the_format_filled_from_kwargs(
    cls: type[exc.NovaException], kwargs: dict, message: str
) -> None:
    error = cls(**kwargs)
    assert str(error) == message
    assert error.format_message() == message
    assert error.args == (message,)


def test_kwargs_are_kept_and_code_is_added() -> None:
    error = exc.OverQuota(overs=["cores"], quotas={"cores": 1}, usages={}, headroom={"cores": 0})
    assert error.kwargs == {
        "overs": ["cores"],
        "quotas": {"cores": 1},
        "usages": {},
        "headroom": {"cores": 0},
        "code": 500,
    }
    assert exc.FlavorNotFound(flavor_id=1).kwargs["code"] == 404
    # A code given by the caller is kept as given.
    assert exc.FlavorNotFound(flavor_id=1, code=410).kwargs["code"] == 410


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (exc.NovaException, 500),
        (exc.NotFound, 404),
        (exc.Invalid, 400),
        (exc.Forbidden, 403),
        (exc.AdminRequired, 403),
        (exc.ConstraintNotMet, 412),
        (exc.InstanceExists, 500),
        (exc.SecurityGroupExists, 400),
        (exc.SecurityGroupDefaultRuleNotFound, 400),
        (exc.PciDeviceNotFound, 500),
        (exc.PciDeviceNotFoundById, 404),
        (exc.NoMoreFloatingIps, 404),
        (exc.InstanceActionNotFound, 500),
        (exc.InvalidBDMFormat, 400),
    ],
)
def test_codes(cls: type[exc.NovaException], code: int) -> None:
    assert cls.code == code


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (exc.MarkerNotFound, "6a1b2c3d-0000-4000-8000-000000000000"),
        (exc.InvalidUUID, "NOT-A-UUID"),
        (exc.FixedIpInvalid, "Fixed IP address 300.1.1.1 is invalid."),
        (exc.InvalidIpAddressError, "x.y is not a valid IP address"),
    ],
)
def test_a_positional_message_is_used_as_is(cls: type[exc.NovaException], message: str) -> None:
    error = cls(message)
    assert str(error) == message
    assert error.format_message() == message
    assert error.kwargs == {"code": cls.code}


def test_a_missing_kwarg_never_crashes_and_stays_readable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=exc.__name__):
        error = exc.KeypairNotFound(user_id="u1")
    # What was given is filled in; what is missing shows its placeholder.
    assert str(error) == "User u1 has no key pair named %(name)s."
    assert "KeypairNotFound" in caplog.text
    assert str(exc.InstanceNotFound()) == "Instance %(instance_id)s could not be found."


def test_a_value_of_the_wrong_type_is_still_shown() -> None:
    assert str(exc.DuplicateVlan(vlan="abc")) == "A network with vlan abc already exists."


def test_every_class_formats_with_its_own_kwargs_and_has_a_docstring() -> None:
    for cls in NOVA_CLASSES:
        assert cls.__doc__ and "\n" not in cls.__doc__.strip(), cls
        names = re.findall(r"%\((\w+)\)", cls.msg_fmt)
        error = cls(**{name: 1 for name in names})
        assert "%(" not in str(error), cls


def test_pickling_keeps_message_and_state() -> None:
    error = exc.InstanceNotFound(instance_id="abc")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is exc.InstanceNotFound
    assert str(copy) == str(error)
    assert copy.kwargs == error.kwargs
    dup = pickle.loads(pickle.dumps(exc.DBDuplicateEntry(["name", "deleted"], "boom")))
    assert (dup.columns, str(dup), dup.inner_exception) == (["name", "deleted"], "boom", "boom")


# ---- hierarchy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (
            exc.InstanceNotFound(instance_id=1),
            (exc.NotFound, exc.NovaException, core.NotFound, core.DBLayerError, LookupError),
        ),
        (exc.ComputeHostNotFound(host=1), (exc.HostNotFound, exc.NotFound, core.NotFound)),
        (exc.FixedIpNotFoundForAddress(address="a"), (exc.FixedIpNotFound, core.NotFound)),
        (exc.ProjectUserQuotaNotFound(project_id="p", user_id="u"), (exc.QuotaNotFound,)),
        (
            exc.MarkerNotFound("m"),
            (exc.NotFound, core.MarkerNotFound, core.NotFound, exc.NovaException),
        ),
        (
            exc.InvalidUUID(uuid="x"),
            (exc.Invalid, core.InvalidValue, ValueError, core.DBLayerError, exc.NovaException),
        ),
        (exc.InvalidBDMFormat(details="d"), (exc.InvalidBDM, exc.Invalid, ValueError)),
        (exc.SecurityGroupExists(project_id="p", security_group_name="n"), (exc.Invalid,)),
        (exc.AdminRequired(), (exc.Forbidden, exc.NovaException, core.DBLayerError)),
        (
            exc.ConstraintNotMet(),
            (exc.NovaException, core.ConstraintNotMet, core.DBLayerError),
        ),
        (
            exc.UnexpectedDeletingTaskStateError(expected="a", actual="deleting"),
            (exc.UnexpectedTaskStateError, exc.NovaException),
        ),
        (exc.NoMoreFloatingIps(), (exc.FloatingIpNotFound, exc.NotFound)),
        (exc.MigrationNotFoundByStatus(instance_id="i", status="s"), (exc.MigrationNotFound,)),
        (exc.DBError("x"), (core.DatabaseError, core.DBLayerError)),
        (
            exc.DBDuplicateEntry(["a"]),
            (exc.DBError, core.DuplicateEntry, core.ConflictError, core.DatabaseError),
        ),
        (exc.DBDeadlock(), (exc.DBError, core.DeadlockError, core.TransientError)),
        (exc.DBConnectionError(), (exc.DBError, core.DBConnectionError, core.TransientError)),
        (exc.DBInvalidUnicodeParameter(), (core.InvalidValue, core.DBLayerError)),
        (
            exc.InvalidSortKey("nope"),
            (core_pagination.InvalidSortKey, core.InvalidQuery, core.DBLayerError),
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_isinstance_of_nova_and_core_bases(error: Exception, bases: tuple[type, ...]) -> None:
    for base in bases:
        assert isinstance(error, base), base


@pytest.mark.parametrize(
    ("error", "not_bases"),
    [
        (exc.PciDeviceNotFound(node_id=1, address="a"), (exc.NotFound, core.NotFound)),
        (exc.InstanceActionNotFound(request_id="r", instance_uuid="u"), (core.NotFound,)),
        (exc.SecurityGroupDefaultRuleNotFound(rule_id=1), (exc.NotFound, core.NotFound)),
        (exc.InstanceExists(name="n"), (core.ConflictError,)),
        (exc.DBError("x"), (exc.NovaException,)),
        (exc.InvalidSortKey("k"), (exc.NovaException,)),
        (exc.DBInvalidUnicodeParameter(), (exc.DBError,)),
    ],
)
def test_not_under_the_wrong_bases(error: Exception, not_bases: tuple[type, ...]) -> None:
    for base in not_bases:
        assert not isinstance(error, base), base


def test_every_nova_exception_is_under_core() -> None:
    assert len(NOVA_CLASSES) > 90
    for cls in NOVA_CLASSES:
        assert issubclass(cls, core.DBLayerError), cls
        if issubclass(cls, exc.NotFound):
            assert issubclass(cls, core.NotFound) and cls.code == 404, cls


def test_core_handlers_catch_nova_errors() -> None:
    with pytest.raises(core.NotFound) as caught:
        raise exc.FlavorNotFound(flavor_id="m1.tiny")
    assert str(caught.value) == "Flavor m1.tiny could not be found."
    with pytest.raises(ValueError):
        raise exc.InvalidID(id="x")
    with pytest.raises(core.MarkerNotFound):
        raise exc.MarkerNotFound(marker="m")
    with pytest.raises(core.ConstraintNotMet):
        raise exc.ConstraintNotMet()


def test_db_errors() -> None:
    inner = RuntimeError("disk on fire")
    error = exc.DBError(inner)
    assert error.inner_exception is inner and str(error) == "disk on fire"
    assert str(exc.DBError()) == "A database error occurred."
    assert str(exc.DBDeadlock()) and str(exc.DBConnectionError())
    assert exc.InvalidSortKey("nope").key == "nope"
    assert str(exc.InvalidSortKey("nope")) == "Sort key supplied is invalid: nope"


def test_db_duplicate_entry() -> None:
    error = exc.DBDuplicateEntry(columns=["flavorid", "deleted"])
    assert error.columns == ["flavorid", "deleted"]
    assert "flavorid" in error.columns
    assert error.inner_exception is None and error.value is None and error.constraint is None
    assert str(error) == "Duplicate entry for columns flavorid, deleted."
    assert exc.DBDuplicateEntry().columns == []
    assert str(exc.DBDuplicateEntry()) == "Duplicate entry."

    # Built from core's DuplicateEntry: message, constraint and columns carried over.
    inner = core.DuplicateEntry(
        "Duplicate entry 'h-b-0' for key 'uniq_services0host0binary0deleted'",
        constraint="uniq_services0host0binary0deleted",
    )
    error = exc.DBDuplicateEntry(inner_exception=inner)
    assert error.columns == ["host", "binary", "deleted"]
    assert error.constraint == "uniq_services0host0binary0deleted"
    assert error.inner_exception is inner
    assert str(error) == str(inner)
    # Explicit columns win.
    assert exc.DBDuplicateEntry(["x"], inner).columns == ["x"]


# ---- duplicate_columns --------------------------------------------------------------------


def test_duplicate_columns_sqlite_lists_the_columns() -> None:
    error = core.DuplicateEntry(
        "UNIQUE constraint failed: services.host, services.binary, services.deleted",
        columns=["host", "binary", "deleted"],
    )
    assert exc.duplicate_columns(error) == ["host", "binary", "deleted"]


def test_duplicate_columns_postgresql() -> None:
    # With the detail line parsed by core, the columns are known.
    told = core.DuplicateEntry(
        'duplicate key value violates unique constraint "uniq_instance_types0flavorid0deleted"',
        constraint="uniq_instance_types0flavorid0deleted",
        columns=["flavorid", "deleted"],
    )
    assert exc.duplicate_columns(told) == ["flavorid", "deleted"]
    # Only the name: nova's uniq_ names are split on "0".
    named = core.DuplicateEntry("dup", constraint="uniq_instance_types0name0deleted")
    assert exc.duplicate_columns(named) == ["name", "deleted"]
    # PostgreSQL's automatic <table>_<col>_key.
    auto = core.DuplicateEntry("dup", constraint="cells_name_key")
    assert exc.duplicate_columns(auto) == ["name"]
    auto = core.DuplicateEntry("dup", constraint="instance_types_flavorid_key")
    assert exc.duplicate_columns(auto, table="instance_types") == ["flavorid"]
    auto = core.DuplicateEntry("dup", constraint="instances_uuid_key")
    assert exc.duplicate_columns(auto, table="instances") == ["uuid"]


def test_duplicate_columns_mariadb() -> None:
    error = core.DuplicateEntry(
        "(1062, \"Duplicate entry 'h1-nova-compute-0' for key 'uniq_services0host0binary0deleted'\")",
        constraint="uniq_services0host0binary0deleted",
    )
    assert exc.duplicate_columns(error) == ["host", "binary", "deleted"]
    assert "binary" in exc.duplicate_columns(error)
    # A key named after its column, a table-qualified name (MySQL 8), the primary key.
    assert exc.duplicate_columns(core.DuplicateEntry("d", constraint="flavorid")) == ["flavorid"]
    qualified = core.DuplicateEntry("d", constraint="services.uniq_services0host0topic0deleted")
    assert exc.duplicate_columns(qualified) == ["host", "topic", "deleted"]
    assert exc.duplicate_columns(core.DuplicateEntry("d", constraint="PRIMARY")) == ["PRIMARY"]


def test_duplicate_columns_unknown() -> None:
    assert exc.duplicate_columns(core.DuplicateEntry("d")) == []
    assert exc.duplicate_columns(exc.DBDuplicateEntry(["a", "b"])) == ["a", "b"]
