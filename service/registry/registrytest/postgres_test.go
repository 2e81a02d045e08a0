package registrytest

import (
	"context"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(StopAfter(m).Run()) }

// connect opens one connection to dbURL for the test.
func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// schemaOf is the search_path a Postgres URL selects.
func schemaOf(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("Postgres returned %q, not a URL: %v", dbURL, err)
	}
	schema := u.Query().Get("search_path")
	if !strings.HasPrefix(schema, "test_") {
		t.Fatalf("Postgres URL selects search_path %q, want a test_ schema", schema)
	}
	return schema
}

// schemaExists asks the server whether schema is there.
func schemaExists(t *testing.T, conn *pgx.Conn, schema string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(t.Context(),
		`SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestPostgresGivesEachTestItsOwnSchema: two tests' databases do not see
// each other's tables, and a test's schema is gone once it ends.
func TestPostgresGivesEachTestItsOwnSchema(t *testing.T) {
	if os.Getenv(URLEnv) != "" && !strings.Contains(os.Getenv(URLEnv), "://") {
		t.Fatalf("this test reads search_path from a URL; set %s in postgres:// form", URLEnv)
	}
	var first string
	t.Run("first", func(t *testing.T) {
		first = Postgres(t)
		conn := connect(t, first)
		if _, err := conn.Exec(t.Context(), `CREATE TABLE marker (id INT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO marker VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		var current string
		if err := conn.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&current); err != nil {
			t.Fatal(err)
		}
		if current != schemaOf(t, first) {
			t.Errorf("current_schema() = %q, want the URL's %q", current, schemaOf(t, first))
		}

		second := Postgres(t)
		if schemaOf(t, second) == schemaOf(t, first) {
			t.Fatalf("two calls returned the same schema %q", schemaOf(t, first))
		}
		// The second schema has no marker table: the name resolves nowhere.
		if _, err := connect(t, second).Exec(t.Context(), `SELECT id FROM marker`); err == nil {
			t.Error("a table made in one test's schema is visible from another's")
		}
	})
	if first == "" {
		t.Fatal("the first subtest got no database")
	}
	admin := connect(t, serverURL(t))
	if schemaExists(t, admin, schemaOf(t, first)) {
		t.Errorf("schema %s outlived its test", schemaOf(t, first))
	}
}

func TestMissingPostgresSaysWhatToInstall(t *testing.T) {
	_, err := binDir(filepath.Join(t.TempDir(), "*", "bin", "initdb"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("binDir with no server installed: %v; want advice to apt-get install postgresql", err)
	}
}

func TestBinDirPicksTheNewestServer(t *testing.T) {
	root := t.TempDir()
	for _, v := range []int{9, 15, 13} {
		dir := filepath.Join(root, strconv.Itoa(v), "bin")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "initdb"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := binDir(filepath.Join(root, "*", "bin", "initdb"))
	if want := filepath.Join(root, "15", "bin"); err != nil || got != want {
		t.Errorf("binDir = %q, %v; want %q (15 beats 13 and 9 numerically)", got, err, want)
	}
}

// TestOnlyTestsImportThisPackage keeps the promise of the package doc: no
// production file of the module imports registrytest (it starts servers and
// trusts every connection).
func TestOnlyTestsImportThisPackage(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	const self = "github.com/walletprovider/recoveryservice/service/registry/registrytest"
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			if path == here {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == self {
				t.Errorf("%s imports %s; only _test.go files may", path, self)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("found no Go files to check")
	}
}
