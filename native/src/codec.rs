//! The wire format (Avro single-object encoding of commands and state records), without Python types.
