-- talos store schema, version 1: the two key tables, the store-wide revision and the change log.
--
-- A key record is stored whole as JSONB (`record`, the serde form of common::model::KeyRecord);
-- the other columns copy the fields that queries filter or sort on, and every write sets both.
-- `nid` is the tenant (uuid.Nil in single-tenant talos), as in the Ory reference schema.
-- Key ids and actor ids use the "C" collation: byte order, the order the redb backend lists and
-- scans in, whatever the database's default collation.

CREATE TABLE issued_api_keys (
    nid         UUID     NOT NULL,
    key_id      TEXT     COLLATE "C" NOT NULL,
    create_time BIGINT   NOT NULL, -- Unix nanoseconds
    expire_time BIGINT   NOT NULL, -- Unix nanoseconds
    actor_id    TEXT     COLLATE "C" NOT NULL,
    status      SMALLINT NOT NULL, -- KeyStatus number as stored: 1 active, 2 revoked
    request_id  TEXT     COLLATE "C",
    record      JSONB    NOT NULL,
    PRIMARY KEY (nid, key_id)
);
-- Idempotent issue: one key per request id and tenant.
CREATE UNIQUE INDEX issued_api_keys_request_id ON issued_api_keys (nid, request_id)
    WHERE request_id IS NOT NULL;
-- Listing order: create_time DESC, key_id DESC; with and without the actor filter.
CREATE INDEX issued_api_keys_listing ON issued_api_keys (nid, create_time DESC, key_id DESC);
CREATE INDEX issued_api_keys_actor_listing ON issued_api_keys (nid, actor_id, create_time DESC, key_id DESC);

CREATE TABLE imported_api_keys (
    nid         UUID     NOT NULL,
    key_id      TEXT     COLLATE "C" NOT NULL, -- hex SHA-512/256 of nid and raw key
    create_time BIGINT   NOT NULL,
    expire_time BIGINT   NOT NULL,
    actor_id    TEXT     COLLATE "C" NOT NULL,
    status      SMALLINT NOT NULL,
    request_id  TEXT     COLLATE "C",
    record      JSONB    NOT NULL,
    PRIMARY KEY (nid, key_id)
);
CREATE UNIQUE INDEX imported_api_keys_request_id ON imported_api_keys (nid, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX imported_api_keys_listing ON imported_api_keys (nid, create_time DESC, key_id DESC);
CREATE INDEX imported_api_keys_actor_listing ON imported_api_keys (nid, actor_id, create_time DESC, key_id DESC);

-- The store-wide revision: one row. Every write transaction increments it once, as its last
-- statement before COMMIT; the row lock that the UPDATE takes is held until COMMIT, so writers
-- take revisions in commit order and a reader never sees revision r+1 without r.
CREATE TABLE store_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision  BIGINT  NOT NULL CHECK (revision >= 0)
);
INSERT INTO store_revision (singleton, revision) VALUES (TRUE, 0);

-- The change log: one row per key touched by the write that took `revision` (a rotation or a
-- batch touches several), in the order the write touched them (`seq`). A deleted key has no row
-- left in its table; the reader reports it as deleted.
CREATE TABLE change_log (
    revision BIGINT  NOT NULL,
    seq      INTEGER NOT NULL,
    nid      UUID    NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('issued', 'imported')),
    key_id   TEXT    COLLATE "C" NOT NULL,
    PRIMARY KEY (revision, seq)
);
