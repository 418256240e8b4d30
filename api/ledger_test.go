package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

type accountReply struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Currency      string `json:"currency"`
	AllowNegative bool   `json:"allow_negative"`
	Balance       string `json:"balance"`
	Version       int64  `json:"version"`
}

type transferReply struct {
	ID            string  `json:"id"`
	FromAccountID string  `json:"from_account_id"`
	ToAccountID   string  `json:"to_account_id"`
	Amount        string  `json:"amount"`
	Currency      string  `json:"currency"`
	Status        string  `json:"status"`
	ReversalOf    *string `json:"reversal_of"`
}

func (s *testServer) post(path, body string, header ...string) reply {
	s.t.Helper()
	return s.do(http.MethodPost, path, []byte(body), header...)
}

func (s *testServer) account(name string, allowNegative bool) accountReply {
	s.t.Helper()
	r := s.post("/accounts", fmt.Sprintf(`{"name":%q,"allow_negative":%t}`, name, allowNegative))
	require.Equal(s.t, http.StatusCreated, r.status, "body: %s", r.body)
	var a accountReply
	require.NoError(s.t, json.Unmarshal(r.body, &a))
	return a
}

func (s *testServer) balance(id string) string {
	s.t.Helper()
	r := s.get("/accounts/" + id)
	require.Equal(s.t, http.StatusOK, r.status, "body: %s", r.body)
	var a accountReply
	require.NoError(s.t, json.Unmarshal(r.body, &a))
	return a.Balance
}

func (s *testServer) transfer(from, to, amount, key string) reply {
	s.t.Helper()
	return s.post("/transfers", fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":%q,"idempotency_key":%q}`, from, to, amount, key))
}

// funded returns a world account and an account holding amount.
func (s *testServer) funded(amount string) (world, acct accountReply) {
	s.t.Helper()
	world, acct = s.account("world", true), s.account("alice", false)
	r := s.transfer(world.ID, acct.ID, amount, "fund-"+acct.ID)
	require.Equal(s.t, http.StatusCreated, r.status, "body: %s", r.body)
	return world, acct
}

func TestAccounts_CreateAnswers201WithAZeroBalance(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	r := s.post("/accounts", `{"name":"alice"}`)
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
	var a accountReply
	require.NoError(t, json.Unmarshal(r.body, &a))
	require.Equal(t, accountReply{ID: a.ID, Name: "alice", Currency: "USD", Balance: "0.0000", Version: 1}, a)

	got := s.get("/accounts/" + a.ID)
	require.Equal(t, http.StatusOK, got.status)
	requireProblem(t, s.get("/accounts/00000000-0000-7000-8000-000000000000"), http.StatusNotFound)
	requireProblem(t, s.get("/accounts/nope"), http.StatusUnprocessableEntity)
	requireProblem(t, s.post("/accounts", `{"name":"x","currency":"usd"}`), http.StatusUnprocessableEntity)
	requireProblem(t, s.post("/accounts", `{"name":""}`), http.StatusUnprocessableEntity)
}

func TestTransfers_MoveMoneyAndAnswerTheOriginalForTheSameKeyAndBody(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	world, alice := s.funded("100.50")
	bob := s.account("bob", false)

	r := s.transfer(alice.ID, bob.ID, "40.25", "t-1")
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
	var first transferReply
	require.NoError(t, json.Unmarshal(r.body, &first))
	require.Equal(t, transferReply{ID: first.ID, FromAccountID: alice.ID, ToAccountID: bob.ID, Amount: "40.2500", Currency: "USD", Status: "COMPLETED"}, first)
	require.Equal(t, "60.2500", s.balance(alice.ID))
	require.Equal(t, "40.2500", s.balance(bob.ID))
	require.Equal(t, "-100.5000", s.balance(world.ID))

	again := s.transfer(alice.ID, bob.ID, "40.25", "t-1")
	require.Equal(t, http.StatusOK, again.status)
	var second transferReply
	require.NoError(t, json.Unmarshal(again.body, &second))
	require.Equal(t, first, second)
	require.Equal(t, "60.2500", s.balance(alice.ID), "moved once")

	requireProblem(t, s.transfer(alice.ID, bob.ID, "1.00", "t-1"), http.StatusConflict)

	header := s.post("/transfers", fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":"1"}`, alice.ID, bob.ID), "Idempotency-Key", "t-2")
	require.Equal(t, http.StatusCreated, header.status, "the header carries the key: %s", header.body)
	both := s.post("/transfers", fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":"1","idempotency_key":"t-3"}`, alice.ID, bob.ID), "Idempotency-Key", "t-4")
	require.Equal(t, []string{"header.Idempotency-Key"}, requireProblem(t, both, http.StatusUnprocessableEntity).locations())

	got := s.get("/transfers/" + first.ID)
	require.Equal(t, http.StatusOK, got.status)
	requireProblem(t, s.get("/transfers/00000000-0000-7000-8000-000000000000"), http.StatusNotFound)
}

func TestTransfers_InsufficientFundsIs422WithItsProblemTypeAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, alice := s.funded("10")
	bob := s.account("bob", false)

	p := requireProblem(t, s.transfer(alice.ID, bob.ID, "10.0001", "t-1"), http.StatusUnprocessableEntity)
	require.Equal(t, "tag:daybook.dev,2026:problems/insufficient-funds", p.Type)
	require.Equal(t, "10.0000", s.balance(alice.ID))
	require.Equal(t, "0.0000", s.balance(bob.ID))
	// A refused transfer does not consume its key: the client may fix and retry it.
	require.Equal(t, http.StatusCreated, s.transfer(alice.ID, bob.ID, "10", "t-1").status)
}

func TestTransfers_BadAmountsAndAccountsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, alice := s.funded("10")
	bob := s.account("bob", false)
	for _, amount := range []string{"0", "-1", "1.23456", "1e3", "abc", "", "100000000000000000000"} {
		r := s.transfer(alice.ID, bob.ID, amount, "bad-"+amount)
		require.Equal(t, []string{"body.amount"}, requireProblem(t, r, http.StatusUnprocessableEntity).locations(), "amount %q", amount)
	}
	number := s.post("/transfers", fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":1.5,"idempotency_key":"n"}`, alice.ID, bob.ID))
	require.Equal(t, []string{"body.amount"}, requireProblem(t, number, http.StatusUnprocessableEntity).locations(), "a JSON number is refused")
	requireProblem(t, s.transfer(alice.ID, alice.ID, "1", "same"), http.StatusUnprocessableEntity)
	requireProblem(t, s.transfer(alice.ID, "00000000-0000-7000-8000-000000000000", "1", "unknown"), http.StatusNotFound)
	eur := s.post("/accounts", `{"name":"eur","currency":"EUR"}`)
	var e accountReply
	require.NoError(t, json.Unmarshal(eur.body, &e))
	requireProblem(t, s.transfer(alice.ID, e.ID, "1", "currency"), http.StatusUnprocessableEntity)
	require.Equal(t, "10.0000", s.balance(alice.ID))
	require.Equal(t, "0.0000", s.balance(bob.ID))
}

func TestTransfers_ConcurrentFullBalanceDebitsLetExactlyOneThrough(t *testing.T) {
	t.Parallel()
	for _, lock := range []string{"postgres", "redis"} {
		t.Run(lock, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, withLedgerLock(lock))
			_, alice := s.funded("50")
			bob := s.account("bob", false)
			var wg sync.WaitGroup
			codes := make([]int, 50)
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						r := s.transfer(alice.ID, bob.ID, "50", fmt.Sprintf("k-%d", i))
						codes[i] = r.status
						if r.status != http.StatusConflict { // 409 + Retry-After: the Redis lock was busy
							return
						}
					}
				}()
			}
			wg.Wait()
			count := map[int]int{}
			for _, c := range codes {
				count[c]++
			}
			require.Equal(t, map[int]int{http.StatusCreated: 1, http.StatusUnprocessableEntity: 49}, count)
			require.Equal(t, "0.0000", s.balance(alice.ID))
			require.Equal(t, "50.0000", s.balance(bob.ID))
		})
	}
}

func TestTransfers_ReversalUndoesATransferOnce(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, alice := s.funded("10")
	bob := s.account("bob", false)
	r := s.transfer(alice.ID, bob.ID, "4", "t-1")
	var tr transferReply
	require.NoError(t, json.Unmarshal(r.body, &tr))

	rev := s.post("/transfers/"+tr.ID+"/reversal", `{"idempotency_key":"rev-1"}`)
	require.Equal(t, http.StatusCreated, rev.status, "body: %s", rev.body)
	var reversal transferReply
	require.NoError(t, json.Unmarshal(rev.body, &reversal))
	require.Equal(t, bob.ID, reversal.FromAccountID)
	require.Equal(t, tr.ID, *reversal.ReversalOf)
	require.Equal(t, "10.0000", s.balance(alice.ID))
	require.Equal(t, "0.0000", s.balance(bob.ID))

	require.Equal(t, http.StatusOK, s.post("/transfers/"+tr.ID+"/reversal", `{"idempotency_key":"rev-1"}`).status)
	requireProblem(t, s.post("/transfers/"+tr.ID+"/reversal", `{"idempotency_key":"rev-2"}`), http.StatusConflict)
	requireProblem(t, s.post("/transfers/00000000-0000-7000-8000-000000000000/reversal", `{"idempotency_key":"rev-3"}`), http.StatusNotFound)
}

func TestEntries_PageWithARunningBalance(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, alice := s.funded("10")
	bob := s.account("bob", false)
	for i, amount := range []string{"1", "2", "3"} {
		require.Equal(t, http.StatusCreated, s.transfer(alice.ID, bob.ID, amount, fmt.Sprintf("t-%d", i)).status)
	}
	type page struct {
		Items []struct {
			Amount         string `json:"amount"`
			Direction      string `json:"direction"`
			RunningBalance string `json:"running_balance"`
		} `json:"items"`
		NextCursor *string `json:"next_cursor"`
	}
	var p1, p2 page
	r := s.get("/accounts/" + alice.ID + "/entries?limit=2")
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.NoError(t, json.Unmarshal(r.body, &p1))
	require.Len(t, p1.Items, 2)
	require.Equal(t, "10.0000", p1.Items[0].RunningBalance)
	require.Equal(t, "credit", p1.Items[0].Direction)
	require.Equal(t, "-1.0000", p1.Items[1].Amount)
	require.Equal(t, "9.0000", p1.Items[1].RunningBalance)
	require.NotNil(t, p1.NextCursor)
	r = s.get("/accounts/" + alice.ID + "/entries?limit=2&cursor=" + *p1.NextCursor)
	require.NoError(t, json.Unmarshal(r.body, &p2))
	require.Len(t, p2.Items, 2)
	require.Equal(t, []string{"7.0000", "4.0000"}, []string{p2.Items[0].RunningBalance, p2.Items[1].RunningBalance})
	require.Nil(t, p2.NextCursor)
}
