-- Why: a conversation may let the model call built-in tools (calculator, date and time,
-- search of one's own conversations). The conversation names the tools it allows; an
-- assistant message keeps the calls it made and a tool message the call it answers, so a
-- stored branch is sent back to the model exactly as it happened.

ALTER TABLE conversations ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN tool_calls TEXT;
ALTER TABLE messages ADD COLUMN tool_call_id TEXT;
