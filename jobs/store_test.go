package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A data dir made before the schema version key: its store holds jobs in
// the API's wire form (testdata/v1-job.json is such a record, as the
// earlier code wrote it). Opening it migrates every job and stamps the
// version; nothing is misread.
func TestStoreMigratesSchema1(t *testing.T) {
	raw, err := os.ReadFile("testdata/v1-job.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(jobsBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte("job-5f3a9c21"), raw)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for range 2 { // a second open finds schema 2 and changes nothing
		st, err := OpenStore(path)
		if err != nil {
			t.Fatal(err)
		}
		j, err := st.Get("job-5f3a9c21")
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		s := j.Spec
		if s.Timeout != 90*time.Minute || s.Policy != PolicyIndex0 || s.Flavor.Memory != 1<<30 || s.Flavor.GPUs != 1 || s.Flavor.CPUs != 1.5 ||
			s.Retries != 2 || !s.Keep || s.Env["EPOCHS"] != "2" || s.Nodes != 2 || s.DataURL != "s3://bkt/data/" {
			t.Errorf("spec %+v", s)
		}
		if j.Status != StatusFailed || *j.ExitCode != 3 || j.Attempt != 2 || j.ImageDigest != "sha256:0d9b3f5c" || len(j.Events) != 2 {
			t.Errorf("job %+v", j)
		}
		t1 := j.Tasks[1]
		if t1.Status != TaskFailed || *t1.ExitCode != 3 || strings.Join(t1.Devices, ",") != "1" || t1.Finished.Format(time.RFC3339) != "2026-11-01T10:04:59Z" {
			t.Errorf("task 1 %+v", t1)
		}
	}
	db, _ = bolt.Open(path, 0o600, nil)
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(metaBucket).Get(versionKey)); v != "2" {
			t.Errorf("schema version %q", v)
		}
		return nil
	})
}

func TestStoreRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	db, _ := bolt.Open(path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(metaBucket)
		return b.Put(versionKey, []byte("9"))
	})
	db.Close()
	_, err := OpenStore(path)
	if err == nil || !strings.Contains(err.Error(), "schema version 9, newer than this malocal's 2") {
		t.Errorf("open of a newer store: %v", err)
	}
}

func TestStoreDropsAnOlderCopy(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j := &Job{ID: "job-1", Status: StatusRunning, rev: 2}
	st.Put(j)
	old := &Job{ID: "job-1", Status: StatusPending, rev: 1}
	st.Put(old)
	if got, _ := st.Get("job-1"); got.Status != StatusRunning {
		t.Errorf("an older copy overwrote a newer one: %s", got.Status)
	}
}
