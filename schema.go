package presenced

import _ "embed" // for Schema

// Schema is the GraphQL schema of presenced (contract section 3), the text of
// schema.graphql. Embedding it keeps the file the single source that the API,
// the README and clients' code generators read.
//
//go:embed schema.graphql
var Schema string
