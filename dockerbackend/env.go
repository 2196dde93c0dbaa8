package dockerbackend

import "os"

var getenv = os.Getenv
