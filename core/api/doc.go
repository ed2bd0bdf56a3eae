// Package api is sandnet's HTTP/JSON API on a unix socket, and its Go
// client, which the CLI uses.
//
// Every route is under /v1/. Success is 200 (201 for a create) with a JSON
// body; failure is a JSON body {"message": "..."} with a status code that
// matches the sdk sentinel the error wraps: 400 invalid, 403 forbidden,
// 404 not found, 409 exists or conflict, 503 unavailable, 501 not
// supported, 504 timeout, 500 anything else. The client turns these back
// into errors that wrap the same sentinels, so errors.Is works across the
// socket as it does across the plugin boundary.
package api
