package samples

import (
	"testing"

	"github.com/malocal/malocal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }
