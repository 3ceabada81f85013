-- Why: search scored every match of a common word (0.8 s for "the" over a million messages)
-- and could only keep to the caller's messages after the fact. The index is rebuilt with an
-- owner column, so FTS itself can keep to one user when a newest-first scan of everyone's
-- matches is not enough, with prefix indexes for search-as-you-type, and with automatic
-- merging off: the server's housekeeper merges in small steps, so no request pays for it.

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TABLE messages_fts;

CREATE VIEW messages_search_source AS
    SELECT m.rowid AS rowid, m.content AS content, 'u' || c.user_id AS owner
    FROM messages m JOIN conversations c ON c.id = m.conversation_id;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, owner, content='messages_search_source', content_rowid='rowid', prefix='2 3',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content, owner)
        SELECT new.rowid, new.content, 'u' || user_id FROM conversations
        WHERE id = new.conversation_id;
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        SELECT 'delete', old.rowid, old.content, 'u' || user_id FROM conversations
        WHERE id = old.conversation_id;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, owner)
        SELECT 'delete', old.rowid, old.content, 'u' || user_id FROM conversations
        WHERE id = old.conversation_id;
    INSERT INTO messages_fts (rowid, content, owner)
        SELECT new.rowid, new.content, 'u' || user_id FROM conversations
        WHERE id = new.conversation_id;
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0);
