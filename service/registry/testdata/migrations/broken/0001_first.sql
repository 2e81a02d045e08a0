-- A migration that works, applied before the broken one.
CREATE TABLE first_table (x INTEGER NOT NULL);
