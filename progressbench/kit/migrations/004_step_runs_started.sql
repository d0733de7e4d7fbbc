-- When each step execution began, so an execution's duration is known and the
-- ledger can count work whose output the user never kept (wasted_work_s).
-- Rows written before this column existed keep NULL (their duration is unknown).
ALTER TABLE step_runs ADD COLUMN started_at timestamptz;
