-- The corrected second migration.
CREATE TABLE second_table (x INTEGER NOT NULL);
INSERT INTO second_table (x) VALUES (1);
