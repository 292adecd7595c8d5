// Package docs holds the user documentation; its tests keep the Go snippets of the documents compiling against the library.
package docs
