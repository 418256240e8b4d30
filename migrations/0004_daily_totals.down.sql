DROP TABLE projection_checkpoints;
DROP TABLE projection_applied;
DROP TABLE account_daily_totals;
