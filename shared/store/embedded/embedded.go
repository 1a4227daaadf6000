// Package embedded implements store.Store in memory, optionally persisted to
// a local JSON file, for development without AWS.
//
// It behaves like store/dynamo: times are kept as whole seconds in UTC (a
// zero time stays zero), empty slices and maps come back nil, and provider
// names may not contain "#".
//
// The file is read once by Open and rewritten after every change, so only
// one process may use a given file at a time. Credentials are sealed in the
// file as store/dynamo seals them in the table (store.SealCredentials),
// usually under a local key file (envelope.OpenLocalKey).
package embedded

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Store is a store.Store held in memory. It is safe for concurrent use.
type Store struct {
	path   string // "" for memory only
	sealer *envelope.Sealer

	mu      sync.Mutex
	states  map[string]store.StateRecord
	conns   map[store.Key]store.Connection
	retired map[store.Key]retired            // keyed with Key.Retired or Key.Pending set
	pending map[store.Key]store.PendingGrant // keyed with Key.Pending set
	links   map[string]store.LinkUse

	// Now is the record clock of the times the store stamps itself:
	// CreatedAt, UpdatedAt, and a retired grant's RetiredAt and due time
	// (nil: time.Now). Times a request is judged by (a lease's Now and
	// Until, a listing's now) come with the request.
	Now func() time.Time
}

func (s *Store) now() time.Time { return clock.Clock{Record: s.Now}.Now() }

// retired is a retired grant and when it is next due.
type retired struct {
	store.RetiredGrant
	Due       time.Time `json:"due"`
	Successor []string  `json:"successor,omitempty"` // store.Successor of the replacing tokens
}

var _ store.Store = (*Store)(nil)

// file is the JSON layout of a store file.
type file struct {
	States      []fileState     `json:"states"`
	Connections []fileConn      `json:"connections"`
	Retired     []fileRetired   `json:"retired,omitempty"`
	Pending     []filePending   `json:"pending,omitempty"`
	Links       []store.LinkUse `json:"links,omitempty"`
}

// fileState and fileConn are records as the file holds them: their
// credential fields empty and sealed into Sealed, the only place Open reads
// credentials from.
type fileState struct {
	store.StateRecord
	Sealed []byte `json:"sealed,omitempty"`
}

type fileConn struct {
	store.Connection
	Sealed []byte `json:"sealed,omitempty"`
}

type fileRetired struct {
	retired
	Sealed []byte `json:"sealed,omitempty"`
}

// filePending is a pending grant until it is taken or first leased for
// revocation, when it moves to retired.
type filePending struct {
	store.PendingGrant
	Sealed []byte `json:"sealed,omitempty"`
}

// Open returns a Store persisted at path, loading the file if it exists,
// that seals credentials in the file with sealer. An empty path gives a
// memory-only Store, which needs no sealer.
func Open(path string, sealer *envelope.Sealer) (*Store, error) {
	s := &Store{
		path:    path,
		sealer:  sealer,
		states:  make(map[string]store.StateRecord),
		conns:   make(map[store.Key]store.Connection),
		retired: make(map[store.Key]retired),
		pending: make(map[store.Key]store.PendingGrant),
		links:   make(map[string]store.LinkUse),
	}
	if path == "" {
		return s, nil
	}
	if sealer == nil {
		return nil, errors.New("embedded: a store file needs a sealer")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("embedded: decode %s: %w", path, err)
	}
	ctx := context.Background()
	for _, fr := range f.States {
		r := fr.StateRecord
		var creds store.Credentials
		if fr.Sealed != nil {
			if creds, err = store.OpenCredentials(ctx, sealer, store.StateRecordKey(r.ID), fr.Sealed); err != nil {
				return nil, fmt.Errorf("embedded: %s: state: %w", path, err)
			}
		}
		r.PKCEVerifier = creds.PKCEVerifier
		s.states[r.ID] = r.Stored()
	}
	for _, fc := range f.Connections {
		c := fc.Connection
		var creds store.Credentials
		if fc.Sealed != nil {
			if creds, err = store.OpenCredentials(ctx, sealer, store.ConnectionRecordKey(c.Provider, c.ConnectionID), fc.Sealed); err != nil {
				return nil, fmt.Errorf("embedded: %s: connection %s/%s: %w", path, c.Provider, c.ConnectionID, err)
			}
		}
		c.AccessToken, c.RefreshToken = creds.AccessToken, creds.RefreshToken
		s.conns[store.Key{Provider: c.Provider, ConnectionID: c.ConnectionID}] = c.Stored()
	}
	for _, fr := range f.Retired {
		r := fr.retired
		k := r.Key
		creds, err := store.OpenCredentials(ctx, sealer, store.ConnectionRecordKey(k.Provider, k.ConnectionID), fr.Sealed)
		if err != nil {
			return nil, fmt.Errorf("embedded: %s: retired grant of %s/%s: %w", path, k.Provider, k.ConnectionID, err)
		}
		r.AccessToken, r.RefreshToken = creds.AccessToken, creds.RefreshToken
		s.retired[k] = r
	}
	for _, fp := range f.Pending {
		p := fp.PendingGrant
		k := p.Key
		creds, err := store.OpenCredentials(ctx, sealer, store.ConnectionRecordKey(k.Provider, k.ConnectionID), fp.Sealed)
		if err != nil {
			return nil, fmt.Errorf("embedded: %s: pending grant for %s/%s: %w", path, k.Provider, k.ConnectionID, err)
		}
		p.Connection.AccessToken, p.Connection.RefreshToken = creds.AccessToken, creds.RefreshToken
		s.pending[k] = p
	}
	for _, u := range f.Links {
		s.links[u.ID] = u
	}
	return s, nil
}

// UseLink implements store.Store.
func (s *Store) UseLink(ctx context.Context, u store.LinkUse) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u.ID == "" || u.BindingHash == "" {
		return errors.New("embedded: use link: empty ID or binding")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.links[u.ID]; ok && old.BindingHash != u.BindingHash {
		return store.ErrConflict
	}
	u.ExpiresAt = store.StoredTime(u.ExpiresAt)
	return setSaved(s, s.links, u.ID, u)
}

// PutPending implements store.Store.
func (s *Store) PutPending(ctx context.Context, g store.PendingGrant) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := g.Key
	if err := k.CheckPending(); err != nil {
		return fmt.Errorf("embedded: put pending: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[k]; ok {
		return store.ErrConflict
	}
	if _, ok := s.retired[k]; ok {
		return store.ErrConflict
	}
	g.Connection = pendingConnection(k, g.Connection)
	g.ExpiresAt = store.StoredTime(g.ExpiresAt)
	return setSaved(s, s.pending, k, g)
}

// pendingConnection is what a store keeps of a pending grant's
// connection: its key, grant and tokens, none of its version, lease or
// failure fields.
func pendingConnection(k store.Key, c store.Connection) store.Connection {
	return store.Connection{
		Provider: k.Provider, ConnectionID: k.ConnectionID,
		AccessToken: c.AccessToken, RefreshToken: c.RefreshToken, TokenType: c.TokenType, ExpiresAt: c.ExpiresAt,
		Scope: c.Scope, Metadata: c.Metadata, Grant: c.Grant, Params: c.Params, NextRefresh: c.NextRefresh,
	}.Stored()
}

// TakePending implements store.Store.
func (s *Store) TakePending(ctx context.Context, k store.Key, now time.Time) (store.PendingGrant, error) {
	if err := ctx.Err(); err != nil {
		return store.PendingGrant{}, err
	}
	if err := k.CheckPending(); err != nil {
		return store.PendingGrant{}, fmt.Errorf("embedded: take pending: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[k]
	if !ok || p.ExpiresAt.Unix() <= now.Unix() {
		return store.PendingGrant{}, store.ErrNotFound
	}
	if err := deleteSaved(s, s.pending, k); err != nil {
		return store.PendingGrant{}, err
	}
	p.Connection = p.Connection.Stored()
	return p, nil
}

// PutState implements store.Store.
func (s *Store) PutState(ctx context.Context, r store.StateRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("embedded: put state: empty ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.states[r.ID]; ok {
		return store.ErrConflict
	}
	return setSaved(s, s.states, r.ID, r.Stored())
}

// TakeState implements store.Store.
func (s *Store) TakeState(ctx context.Context, id, bindingHash string) (store.StateRecord, error) {
	if err := ctx.Err(); err != nil {
		return store.StateRecord{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.states[id]
	if !ok || r.BindingHash != bindingHash {
		return store.StateRecord{}, store.ErrNotFound
	}
	if err := deleteSaved(s, s.states, id); err != nil {
		return store.StateRecord{}, err
	}
	return r.Stored(), nil
}

// DeleteConnection implements store.Store.
func (s *Store) DeleteConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	if err := ctx.Err(); err != nil {
		return store.Connection{}, err
	}
	if err := store.CheckKey(provider, connectionID); err != nil {
		return store.Connection{}, fmt.Errorf("embedded: delete connection: %w", err)
	}
	k := store.Key{Provider: provider, ConnectionID: connectionID}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[k]
	if !ok {
		return store.Connection{}, store.ErrNotFound
	}
	if err := deleteSaved(s, s.conns, k); err != nil {
		return store.Connection{}, err
	}
	return c.Stored(), nil
}

// GetConnection implements store.Store.
func (s *Store) GetConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	if err := ctx.Err(); err != nil {
		return store.Connection{}, err
	}
	if err := store.CheckKey(provider, connectionID); err != nil {
		return store.Connection{}, fmt.Errorf("embedded: get connection: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[store.Key{Provider: provider, ConnectionID: connectionID}]
	if !ok {
		return store.Connection{}, store.ErrNotFound
	}
	return c.Stored(), nil
}

// PeekConnection implements store.Store.
func (s *Store) PeekConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	c, err := s.GetConnection(ctx, provider, connectionID)
	c.AccessToken, c.RefreshToken = "", ""
	return c, err
}

// SaveConnection implements store.Store.
func (s *Store) SaveConnection(ctx context.Context, c store.Connection) (store.Connection, error) {
	return s.saveConn(ctx, c, "")
}

// ReplaceConnection implements store.Store.
func (s *Store) ReplaceConnection(ctx context.Context, c store.Connection) (store.Connection, error) {
	if c.Version == 0 {
		return store.Connection{}, errors.New("embedded: replace connection: version 0 replaces nothing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.conns[store.Key{Provider: c.Provider, ConnectionID: c.ConnectionID}]
	saved, err := s.saveConnLocked(ctx, c, "")
	if err != nil || old.AccessToken == "" && old.RefreshToken == "" {
		return saved, err
	}
	now := s.now()
	k := store.Key{Provider: c.Provider, ConnectionID: c.ConnectionID, Retired: rand.Text()}
	r := retired{
		RetiredGrant: store.RetiredGrant{
			Key: k, Params: maps.Clone(old.Params),
			AccessToken: old.AccessToken, RefreshToken: old.RefreshToken,
			RetiredAt: store.StoredTime(now),
		},
		Due:       store.StoredTime(now),
		Successor: store.Successor(c.AccessToken, c.RefreshToken),
	}
	if err := setSaved(s, s.retired, k, r); err != nil {
		return saved, fmt.Errorf("embedded: replace connection: %w: %v", store.ErrNotRetired, err)
	}
	return saved, nil
}

// LeaseRetired implements store.Store.
func (s *Store) LeaseRetired(ctx context.Context, k store.Key, now, until time.Time) (store.RetiredGrant, error) {
	if err := ctx.Err(); err != nil {
		return store.RetiredGrant{}, err
	}
	if err := k.CheckApart(); err != nil {
		return store.RetiredGrant{}, fmt.Errorf("embedded: lease retired: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pending[k]; ok && p.ExpiresAt.Unix() <= now.Unix() {
		// An expired pending grant is retired by its first lease, in one
		// save: from now on only the refresh schedule has it.
		c := p.Connection
		r := retired{RetiredGrant: store.RetiredGrant{Key: k, Params: maps.Clone(c.Params),
			AccessToken: c.AccessToken, RefreshToken: c.RefreshToken, RetiredAt: p.ExpiresAt}, Due: p.ExpiresAt}
		delete(s.pending, k)
		s.retired[k] = r
		if err := s.save(); err != nil {
			s.pending[k] = p
			delete(s.retired, k)
			return store.RetiredGrant{}, err
		}
	}
	r, ok := s.retired[k]
	if !ok || r.Due.Unix() > now.Unix() {
		return store.RetiredGrant{}, store.ErrConflict
	}
	r.Due, r.Attempts = store.StoredTime(until), r.Attempts+1
	if err := setSaved(s, s.retired, k, r); err != nil {
		return store.RetiredGrant{}, err
	}
	g := r.RetiredGrant
	g.Params = maps.Clone(g.Params)
	g.MarkInUse(r.Successor)
	return g, nil
}

// DropRetired implements store.Store.
func (s *Store) DropRetired(ctx context.Context, k store.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := k.CheckApart(); err != nil {
		return fmt.Errorf("embedded: drop retired: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[k]; ok {
		return deleteSaved(s, s.pending, k)
	}
	if _, ok := s.retired[k]; !ok {
		return nil
	}
	return deleteSaved(s, s.retired, k)
}

// SaveLeased implements store.Store.
func (s *Store) SaveLeased(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	if owner == "" {
		return store.Connection{}, errors.New("embedded: save leased: empty owner")
	}
	return s.saveConn(ctx, c, owner)
}

func (s *Store) saveConn(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveConnLocked(ctx, c, owner)
}

// saveConnLocked is saveConn with s.mu held.
func (s *Store) saveConnLocked(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	if err := ctx.Err(); err != nil {
		return store.Connection{}, err
	}
	if err := store.CheckKey(c.Provider, c.ConnectionID); err != nil {
		return store.Connection{}, fmt.Errorf("embedded: save connection: %w", err)
	}
	k := store.Key{Provider: c.Provider, ConnectionID: c.ConnectionID}
	old, exists := s.conns[k]
	switch {
	case owner != "" && (!exists || old.Version != c.Version || old.Lease.Owner != owner),
		owner == "" && c.Version == 0 && exists,
		owner == "" && c.Version != 0 && (!exists || old.Version != c.Version):
		return store.Connection{}, store.ErrConflict
	}
	now := s.now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	c.Version++
	c.Lease = store.Lease{}
	return s.put(k, c)
}

// Lease implements store.Store.
func (s *Store) Lease(ctx context.Context, k store.Key, req store.LeaseRequest) (store.Connection, error) {
	if err := ctx.Err(); err != nil {
		return store.Connection{}, err
	}
	if err := req.Check(k); err != nil {
		return store.Connection{}, fmt.Errorf("embedded: lease: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.conns[k]
	if !exists || !old.Lease.Free(req.Now) ||
		req.Due && (old.NextRefresh.IsZero() || old.NextRefresh.Unix() > req.Now.Unix()) ||
		req.Version != 0 && old.Version != req.Version {
		return store.Connection{}, store.ErrConflict
	}
	c := old.Stored()
	c.Lease = store.Lease{Owner: req.Owner, Until: req.Until}
	if req.Due {
		c.NextRefresh = req.Until
	}
	c.Version++
	c.UpdatedAt = s.now()
	return s.put(k, c)
}

// put stores c under k and returns it as stored. s.mu must be held.
func (s *Store) put(k store.Key, c store.Connection) (store.Connection, error) {
	c = c.Stored()
	if err := setSaved(s, s.conns, k, c); err != nil {
		return store.Connection{}, err
	}
	return c.Stored(), nil
}

// setSaved sets m[k] to v and saves the store; deleteSaved deletes m[k]
// and saves it. When the save fails, m[k] is put back as it was, so that
// memory never holds what the file does not. s.mu must be held.
func setSaved[K comparable, V any](s *Store, m map[K]V, k K, v V) error {
	return saveOrUndo(s, m, k, func() { m[k] = v })
}

func deleteSaved[K comparable, V any](s *Store, m map[K]V, k K) error {
	return saveOrUndo(s, m, k, func() { delete(m, k) })
}

func saveOrUndo[K comparable, V any](s *Store, m map[K]V, k K, change func()) error {
	old, had := m[k]
	change()
	err := s.save()
	if err != nil {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	}
	return err
}

// ListDue implements store.Store.
func (s *Store) ListDue(ctx context.Context, now time.Time, limit int, skip ...string) ([]store.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	isDue := func(at time.Time, provider string) bool {
		return !at.IsZero() && at.Unix() <= now.Unix() && !slices.Contains(skip, provider)
	}
	s.mu.Lock()
	var due []store.DueKey
	for k, c := range s.conns {
		if isDue(c.NextRefresh, c.Provider) {
			due = append(due, store.DueKey{Key: k, At: c.NextRefresh})
		}
	}
	for k, r := range s.retired {
		if isDue(r.Due, k.Provider) {
			due = append(due, store.DueKey{Key: k, At: r.Due})
		}
	}
	for k, p := range s.pending {
		if isDue(p.ExpiresAt, k.Provider) {
			due = append(due, store.DueKey{Key: k, At: p.ExpiresAt})
		}
	}
	s.mu.Unlock()
	return store.FirstDue(due, limit), nil
}

// save writes the whole store to s.path atomically. s.mu must be held.
func (s *Store) save() error {
	if s.path == "" {
		return nil
	}
	ctx := context.Background() // local sealing: no call to cancel
	var f file
	for _, r := range s.states {
		fr := fileState{StateRecord: r}
		if r.PKCEVerifier != "" {
			sealed, err := store.SealCredentials(ctx, s.sealer, store.StateRecordKey(r.ID), store.Credentials{PKCEVerifier: r.PKCEVerifier})
			if err != nil {
				return fmt.Errorf("embedded: save: %w", err)
			}
			fr.PKCEVerifier, fr.Sealed = "", sealed
		}
		f.States = append(f.States, fr)
	}
	for _, c := range s.conns {
		fc := fileConn{Connection: c}
		if creds := (store.Credentials{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken}); !creds.IsZero() {
			sealed, err := store.SealCredentials(ctx, s.sealer, store.ConnectionRecordKey(c.Provider, c.ConnectionID), creds)
			if err != nil {
				return fmt.Errorf("embedded: save: %w", err)
			}
			fc.AccessToken, fc.RefreshToken, fc.Sealed = "", "", sealed
		}
		f.Connections = append(f.Connections, fc)
	}
	for _, r := range s.retired {
		fr := fileRetired{retired: r}
		k := r.Key
		sealed, err := store.SealCredentials(ctx, s.sealer, store.ConnectionRecordKey(k.Provider, k.ConnectionID), store.Credentials{AccessToken: r.AccessToken, RefreshToken: r.RefreshToken})
		if err != nil {
			return fmt.Errorf("embedded: save: %w", err)
		}
		fr.AccessToken, fr.RefreshToken, fr.Sealed = "", "", sealed
		f.Retired = append(f.Retired, fr)
	}
	for _, p := range s.pending {
		fp := filePending{PendingGrant: p}
		k := p.Key
		sealed, err := store.SealCredentials(ctx, s.sealer, store.ConnectionRecordKey(k.Provider, k.ConnectionID), store.Credentials{AccessToken: p.Connection.AccessToken, RefreshToken: p.Connection.RefreshToken})
		if err != nil {
			return fmt.Errorf("embedded: save: %w", err)
		}
		fp.Connection.AccessToken, fp.Connection.RefreshToken, fp.Sealed = "", "", sealed
		f.Pending = append(f.Pending, fp)
	}
	now := s.now()
	for _, u := range s.links {
		if u.ExpiresAt.After(now) { // a used link past its expiry verifies no more
			f.Links = append(f.Links, u)
		}
	}
	slices.SortFunc(f.Links, func(a, b store.LinkUse) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(f.Pending, func(a, b filePending) int { return strings.Compare(a.Key.Pending, b.Key.Pending) })
	slices.SortFunc(f.Retired, func(a, b fileRetired) int {
		return strings.Compare(a.Key.Retired+a.Key.Pending, b.Key.Retired+b.Key.Pending)
	})
	slices.SortFunc(f.States, func(a, b fileState) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(f.Connections, func(a, b fileConn) int {
		return cmp.Or(strings.Compare(a.Provider, b.Provider), strings.Compare(a.ConnectionID, b.ConnectionID))
	})
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("embedded: encode: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("embedded: save: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("embedded: save: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("embedded: save: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("embedded: save: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("embedded: save: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("embedded: save: %w", err)
	}
	return nil
}
