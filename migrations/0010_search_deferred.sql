-- Why: indexing a message for search (FTS5 with 2- and 3-letter prefixes, so each word goes in
-- three times) was most of a chat turn's writes, on the event loop and in the turn's path. A
-- new or changed message now waits in search_pending; the housekeeper indexes what waits, in
-- batches on its own thread, and a search first indexes whatever still waits, so it never
-- misses a message. A reply being streamed waits until it is finished: it is indexed once,
-- with its answer, instead of empty and then again.

CREATE TABLE search_pending (rowid INTEGER PRIMARY KEY);

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO search_pending (rowid) VALUES (new.rowid);
END;
-- An indexed message leaves the index with the text it was indexed with, and waits again.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
WHEN NOT EXISTS (SELECT 1 FROM search_pending WHERE rowid = old.rowid) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        SELECT 'delete', old.rowid, old.content, 'u' || user_id FROM conversations
        WHERE id = old.conversation_id;
    INSERT INTO search_pending (rowid) VALUES (new.rowid);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        SELECT 'delete', old.rowid, old.content, 'u' || user_id FROM conversations
        WHERE id = old.conversation_id
        AND NOT EXISTS (SELECT 1 FROM search_pending WHERE rowid = old.rowid);
    DELETE FROM search_pending WHERE rowid = old.rowid;
END;
