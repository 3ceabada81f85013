-- Why: conversations_user_updated (0001) answered the conversation listing until 0003 gave
-- the listing an index of its own (conversations_listing: user, deleted_at, updated_at, id),
-- which also covers every lookup by user. The old one was only kept up to date: every chat
-- turn moves its conversation's updated_at, and so rewrote an entry in both.

DROP INDEX conversations_user_updated;
