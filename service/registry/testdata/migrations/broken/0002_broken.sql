-- Creates a table, then fails: the table must not survive the failure.
CREATE TABLE second_table (x INTEGER NOT NULL);
INSERT INTO second_table (x) VALUES (1);
INSERT INTO no_such_table (x) VALUES (1);
