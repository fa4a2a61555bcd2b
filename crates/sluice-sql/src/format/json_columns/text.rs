//! JSON values written back as compact JSON text, as Flink reads an object or an array
//! into a `STRING` column.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Writes the value it reads as compact JSON text, its fields in their order.
pub(super) struct JsonText<'a>(pub(super) &'a mut Vec<u8>);

impl JsonText<'_> {
    fn write<T: serde::Serialize + ?Sized, E: de::Error>(self, value: &T) -> Result<(), E> {
        serde_json::to_writer(self.0, value).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for JsonText<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        parser.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonText<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.write(&())
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.write(&value)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.write(&value)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.write(&value)
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.write(&value)
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.write(value)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !std::mem::take(&mut first) {
                self.0.push(b',');
            }
            serde_json::to_writer(&mut *self.0, key.as_ref()).map_err(de::Error::custom)?;
            self.0.push(b':');
            map.next_value_seed(JsonText(&mut *self.0))?;
        }
        self.0.push(b'}');
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        while seq.next_element_seed(JsonTextElement { text: &mut *self.0, first: &mut first })?.is_some() {}
        self.0.push(b']');
        Ok(())
    }
}

/// An array's element as JSON text, a comma before all but the first.
struct JsonTextElement<'a> {
    text: &'a mut Vec<u8>,
    first: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for JsonTextElement<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        if !std::mem::take(self.first) {
            self.text.push(b',');
        }
        JsonText(self.text).deserialize(parser)
    }
}
