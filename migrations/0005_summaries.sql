-- Why: long conversations drop their oldest turns from the prompt; a rolling summary written
-- by the model stands in for them, and must be stored to be reused and refreshed.

ALTER TABLE conversations ADD COLUMN summary TEXT;
ALTER TABLE conversations ADD COLUMN summary_through TEXT;
