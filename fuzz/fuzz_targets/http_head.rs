//! Raw bytes as the front of a connection's read buffer: frame the request head, and when it
//! declares chunked framing, decode the rest as its body.
//!
//! Beyond "never panics", this checks the promises the connection loop relies on: the head
//! length lies within the input, a declared body is within `MAX_BODY`, and the chunked decoder
//! gives the same answer whether the body arrives at once or a byte at a time (its doc says the
//! result does not depend on how the input is split; a disagreement there is a smuggling bug).
#![no_main]

use engine::parse::{self, BodyFraming, ChunkedDecoder, MAX_BODY, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(head)) = parse::parse_head(data, &mut headers) else {
        return;
    };
    assert!(head.head_len <= data.len(), "head_len {} past the input ({})", head.head_len, data.len());
    assert!(head.header_count <= MAX_HEADERS);
    match head.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => assert!(n <= MAX_BODY, "declared body {n} over MAX_BODY"),
        BodyFraming::Chunked => {
            let body = &data[head.head_len..];
            let whole = decode_whole(body);
            let bytewise = decode_bytewise(body);
            assert_eq!(whole, bytewise, "chunked decoding depends on how the input is split");
        }
    }
});

/// What decoding `input` yields: `Ok((consumed, done, body))` or the error.
type Decoded = Result<(usize, bool, Vec<u8>), parse::FramingError>;

fn decode_whole(input: &[u8]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (consumed, done) = decoder.decode(input, &mut out)?;
    check(&decoder, consumed, done, input, &out);
    Ok((consumed, done, out))
}

fn decode_bytewise(input: &[u8]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for byte in input {
        let (used, done) = decoder.decode(std::slice::from_ref(byte), &mut out)?;
        consumed += used;
        if done {
            check(&decoder, consumed, true, input, &out);
            return Ok((consumed, true, out));
        }
        assert_eq!(used, 1, "an unfinished decoder consumes every byte it is given");
    }
    check(&decoder, consumed, false, input, &out);
    Ok((consumed, false, out))
}

fn check(decoder: &ChunkedDecoder, consumed: usize, done: bool, input: &[u8], out: &[u8]) {
    assert!(consumed <= input.len());
    assert_eq!(done, decoder.is_done());
    assert_eq!(decoder.decoded_len(), out.len());
    assert!(out.len() <= MAX_BODY);
}
