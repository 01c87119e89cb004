"""Schemas and the key and timestamp generators (jobman.dao.utils); no database involved."""

from __future__ import annotations

import time
import uuid

from dblayer.stores.jobman import (
    Schema,
    SchemaMeta,
    TimestampedSchemaMixin,
    generate_key,
    generate_timestamp,
    generate_timestamp_fields,
    generate_uuid,
)


def test_generators_ignore_their_arguments():
    for generate in (generate_key, generate_uuid):
        value = generate(1, record={"x": 1})
        assert str(uuid.UUID(value)) == value
        assert generate() != generate()
    before = time.time()
    stamp = generate_timestamp("ignored", record={})
    assert isinstance(stamp, float) and before <= stamp <= time.time()


def test_generate_timestamp_fields_gives_fresh_specs():
    fields = generate_timestamp_fields()
    assert fields == {
        "created": {"type": "FLOAT", "default": generate_timestamp},
        "modified": {"type": "FLOAT", "auto_update": generate_timestamp},
    }
    fields["created"]["type"] = "TEXT"
    assert generate_timestamp_fields()["created"]["type"] == "FLOAT"


def test_get_field_infos_merges_bases_first():
    class Base(TimestampedSchemaMixin, Schema):
        key = {"type": "TEXT", "primary_key": True}
        size = {"type": "INTEGER"}
        _private = {"type": "TEXT"}
        not_a_field = "text"

    class Child(Base):
        colour = {"type": "TEXT"}
        size = {"type": "FLOAT"}

    assert list(Base.get_field_infos()) == ["created", "modified", "key", "size"]
    infos = Child.get_field_infos()
    assert list(infos) == ["created", "modified", "key", "size", "colour"]
    assert infos["size"] == {"type": "FLOAT"}
    assert infos["created"] == {"type": "FLOAT", "default": generate_timestamp}
    infos["key"]["type"] = "JSON"  # a copy: the schema is unchanged
    assert Child.get_field_infos()["key"]["type"] == "TEXT"


def test_timestamped_schema_mixin():
    assert TimestampedSchemaMixin.get_field_infos() == generate_timestamp_fields()
    assert issubclass(TimestampedSchemaMixin, Schema)


def test_schema_meta_propagates_doc_strings():
    class Documented(Schema):
        """Fields of a documented thing."""

        def describe(self):
            """Say what it is."""

    class Undocumented(Documented):
        def describe(self):
            pass

    assert type(Schema) is SchemaMeta
    assert Undocumented.__doc__ == "Fields of a documented thing."
    assert Undocumented.describe.__doc__ == "Say what it is."
    assert Schema.get_field_infos.__doc__
