DROP TABLE ledger_entries;
DROP TABLE transfers;
DROP TABLE account_balances;
DROP TABLE accounts;
DROP FUNCTION ledger_entries_check_balanced();
