// Package config loads and validates the configuration of one geogate
// region: the YAML file, GEOGATE_* environment variables and flags of
// `geogate serve`.
//
// A configuration is assembled from layers, each overriding the one before:
//
//  1. built-in defaults (see Default);
//  2. the YAML file (--config FILE, else $GEOGATE_CONFIG);
//  3. environment variables GEOGATE_<KEY>: the key upper-cased, nesting
//     written "__" (GEOGATE_HTTP__LISTEN is http.listen, GEOGATE_DATA_DIR is
//     data_dir). A single "_" for a dot works too when exactly one key fits
//     the name (GEOGATE_HTTP_LISTEN, GEOGATE_LOG_LEVEL); a name that several
//     keys would fit is refused with the spelling of each, and one that
//     starts as a section does but fits no key (GEOGATE_LOG_LEVL) is an
//     unknown key. GEOGATE_CONFIG names the file, and variables whose first
//     key is neither a key nor a likely misspelling of one (GEOGATE_URL of
//     the client verbs) are not configuration and are ignored;
//  4. command-line flags that the user actually set (RegisterFlags), the
//     generic --set key.path=value last.
//
// Environment and --set values are strings, converted to the key's type; a
// value starting with '[' or '{' is read as a YAML flow list or mapping, so a
// list can be given as "[us-east, eu-west]" (or as "us-east,eu-west").
//
// Settings derived from others are filled in after merging (see
// Config.Complete): data_dir defaults to ./data/<region>, http.listen and
// nats.listen to the host:port of this region's entry in regions,
// nats.store_dir to <data_dir>/nats, and rules to one lww rule for every key.
//
// A relative path written in the file for a key that names a file
// (FilePathKeys: TLS pairs and CAs, the tokens file, NATS credentials, the
// token keys) is relative to the file's directory, so a deployment folder
// written by geogate init works from any working directory and can be
// moved whole; from the environment or a flag it stays relative to the
// working directory (data_dir too, as always).
//
// Loading is strict: a key that is not part of the schema is an error naming
// the key and where it came from, and Validate refuses bad values naming the
// key and the reason. Load does nothing but read the file and the given
// environment and flags, so a process can refuse a bad configuration before
// it touches any data.
package config
