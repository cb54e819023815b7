//! SOAP 1.2 as ONVIF uses it: reading a request (which operation, in which namespace;
//! its WS-Security UsernameToken; the few arguments the operations take) and writing
//! responses and faults. Pure functions over bytes and strings.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::auth::UsernameToken;

pub const ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const TDS: &str = "http://www.onvif.org/ver10/device/wsdl";
pub const TRT: &str = "http://www.onvif.org/ver10/media/wsdl";
pub const TEV: &str = "http://www.onvif.org/ver10/events/wsdl";
pub const WSNT: &str = "http://docs.oasis-open.org/wsn/b-2";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_DIGEST: &str = "#PasswordDigest";

/// A parsed request: the operation (the first element of the Body), its arguments as
/// `(local name, text)` of every element inside it, and the security header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub namespace: String,
    pub operation: String,
    pub arguments: Vec<(String, String)>,
    pub token: Option<UsernameToken>,
}

impl Request {
    /// The text of the first argument element named `name` (any depth).
    pub fn argument(&self, name: &str) -> Option<&str> {
        self.arguments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("not a SOAP 1.2 envelope with a body")]
    NotSoap,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Outside,
    Header,
    Token,
    Body,
    Operation,
}

/// The text a reference (`&amp;`, `&#65;`) stands for; `None` for an unknown entity.
pub fn reference(r: &quick_xml::events::BytesRef) -> Option<String> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Some(c.to_string()),
        Ok(None) => quick_xml::escape::resolve_predefined_entity(r).map(str::to_owned),
        Err(_) => None,
    }
}

/// Reads a SOAP request.
pub fn parse(xml: &[u8]) -> Result<Request, ParseError> {
    let text = std::str::from_utf8(xml).map_err(|e| ParseError::Xml(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    let mut out = Request::default();
    let mut text = String::new();
    let mut place = Place::Outside;
    let mut depth = 0usize;
    let mut op_depth = 0usize;
    let mut saw_envelope = false;
    let mut current: Option<String> = None;
    let mut token = UsernameToken {
        digest: true,
        ..UsernameToken::default()
    };
    let mut has_token = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Xml(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(n) => n.as_ref().to_owned(),
            _ => String::new(),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                text.clear();
                let local = e.local_name().as_ref().to_owned();
                depth += 1;
                match (place, depth, ns.as_str(), local.as_str()) {
                    (Place::Outside, 1, ENV, "Envelope") => saw_envelope = true,
                    (Place::Outside, 2, ENV, "Header") => place = Place::Header,
                    (Place::Outside, 2, ENV, "Body") => place = Place::Body,
                    (Place::Header, _, WSSE, "UsernameToken") => {
                        place = Place::Token;
                        has_token = true;
                    }
                    (Place::Token, _, _, "Password") => {
                        // WSS's default type is PasswordText: a digest says so.
                        token.digest =
                            attribute(e, "Type").is_some_and(|t| t.ends_with(PASSWORD_DIGEST));
                        current = Some(local);
                    }
                    (Place::Token, _, WSSE | WSU, _) => current = Some(local),
                    (Place::Body, 3, _, _) => {
                        out.namespace = ns;
                        out.operation = local;
                        place = Place::Operation;
                        op_depth = depth;
                    }
                    (Place::Operation, _, _, _) => current = Some(local),
                    _ => {}
                }
                if empty {
                    // No end event follows: close it here.
                    current = None;
                    if place == Place::Operation && depth == op_depth {
                        place = Place::Body;
                    }
                    depth -= 1;
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let value = reference(&r)
                    .ok_or_else(|| ParseError::Xml(format!("unknown entity &{};", &*r)))?;
                text.push_str(&value);
            }
            Event::End(e) => {
                let local = e.local_name().as_ref().to_owned();
                let value = std::mem::take(&mut text).trim().to_owned();
                match (place, current.take().as_deref()) {
                    (Place::Token, Some("Username")) => token.username = value,
                    (Place::Token, Some("Password")) => token.password = value,
                    (Place::Token, Some("Nonce")) => token.nonce = value,
                    (Place::Token, Some("Created")) => token.created = value,
                    (Place::Operation, Some(name)) if name == local => {
                        out.arguments.push((name.to_owned(), value));
                    }
                    _ => {}
                }
                match (place, local.as_str()) {
                    (Place::Token, "UsernameToken") => place = Place::Header,
                    (Place::Header, "Header") if depth == 2 => place = Place::Outside,
                    (Place::Operation, _) if depth == op_depth => place = Place::Body,
                    (Place::Body, "Body") if depth == 2 => place = Place::Outside,
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof if depth > 0 => {
                return Err(ParseError::Xml(
                    "the document ends inside an element".into(),
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_envelope || out.operation.is_empty() {
        return Err(ParseError::NotSoap);
    }
    out.token = has_token.then_some(token);
    Ok(out)
}

fn attribute(e: &quick_xml::events::BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Escapes text for an element's content or an attribute value.
pub fn esc(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// A response envelope around `body` (already XML), with every namespace ONVIF answers
/// use declared on the root.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <env:Envelope xmlns:env=\"{ENV}\" xmlns:tds=\"{TDS}\" xmlns:trt=\"{TRT}\" \
         xmlns:tev=\"{TEV}\" xmlns:tt=\"http://www.onvif.org/ver10/schema\" \
         xmlns:ter=\"http://www.onvif.org/ver10/error\" \
         xmlns:wsa=\"http://www.w3.org/2005/08/addressing\" xmlns:wsnt=\"{WSNT}\" \
         xmlns:wstop=\"http://docs.oasis-open.org/wsn/t-1\" \
         xmlns:tns1=\"http://www.onvif.org/ver10/topics\" \
         xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\
         <env:Body>{body}</env:Body></env:Envelope>\n"
    )
}

/// A SOAP fault: `code` is `env:Sender` or `env:Receiver`, `subcode` an ONVIF `ter:`
/// code, `reason` what a person reads.
pub fn fault(code: &str, subcode: &str, reason: &str) -> String {
    envelope(&format!(
        "<env:Fault><env:Code><env:Value>{code}</env:Value>\
         <env:Subcode><env:Value>{subcode}</env:Value></env:Subcode></env:Code>\
         <env:Reason><env:Text xml:lang=\"en\">{}</env:Text></env:Reason></env:Fault>",
        esc(reason)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as onvif-zeep sends it (prefixes its own), with a digest token.
    const ZEEP: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope">
  <soap-env:Header>
    <wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <wsse:UsernameToken>
        <wsse:Username>edgecam</wsse:Username>
        <wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">W+AMPWIcgBDGW9XpBeBhrAdNo+g=</wsse:Password>
        <wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">MDEyMzQ1Njc4OWFiY2RlZg==</wsse:Nonce>
        <wsu:Created xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">2024-01-01T00:00:00Z</wsu:Created>
      </wsse:UsernameToken>
    </wsse:Security>
  </soap-env:Header>
  <soap-env:Body>
    <ns0:GetStreamUri xmlns:ns0="http://www.onvif.org/ver10/media/wsdl">
      <ns0:StreamSetup>
        <ns1:Stream xmlns:ns1="http://www.onvif.org/ver10/schema">RTP-Unicast</ns1:Stream>
        <ns2:Transport xmlns:ns2="http://www.onvif.org/ver10/schema"><ns2:Protocol>RTSP</ns2:Protocol></ns2:Transport>
      </ns0:StreamSetup>
      <ns0:ProfileToken>main</ns0:ProfileToken>
    </ns0:GetStreamUri>
  </soap-env:Body>
</soap-env:Envelope>"#;

    #[test]
    fn a_zeep_request_gives_its_operation_arguments_and_token() {
        let r = parse(ZEEP.as_bytes()).unwrap();
        assert_eq!(r.namespace, TRT);
        assert_eq!(r.operation, "GetStreamUri");
        assert_eq!(r.argument("ProfileToken"), Some("main"));
        assert_eq!(r.argument("Protocol"), Some("RTSP"));
        let t = r.token.unwrap();
        assert_eq!(t.username, "edgecam");
        assert!(t.digest);
        assert_eq!(t.created, "2024-01-01T00:00:00Z");
        assert!(super::super::auth::verify(&t, "edgecam", "secret"));
    }

    #[test]
    fn an_empty_operation_element_and_no_header_parse() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>"#;
        let r = parse(xml.as_bytes()).unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.operation.as_str()),
            (TDS, "GetSystemDateAndTime")
        );
        assert_eq!(r.token, None);
    }

    #[test]
    fn broken_input_is_an_error_never_a_panic() {
        for bad in [
            &b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><x>"[..],
            b"not xml at all",
            b"",
            b"<a><b></a></b>",
            b"\xff\xfe<x/>",
            b"<Envelope><Body><GetProfiles/></Body></Envelope>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn faults_carry_code_subcode_and_an_escaped_reason() {
        let f = fault("env:Sender", "ter:NotAuthorized", "Sender <not> Authorized");
        assert!(f.contains("<env:Value>ter:NotAuthorized</env:Value>"));
        assert!(f.contains("Sender &lt;not&gt; Authorized"));
        assert!(f.contains("xmlns:ter=\"http://www.onvif.org/ver10/error\""));
    }
}
