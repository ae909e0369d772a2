-- Back to 0013: nothing to undo in the schema (a rollback removes the database code before the
-- migrations; the code of 0013 creates both functions with their earlier signatures).
SELECT 1;
