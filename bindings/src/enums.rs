//! How the module's enums are declared: every one a `#[pyclass]` simple enum with the same
//! options (compare with `==` and with their `int()`, hash, immutable, taken by value as
//! arguments), most mirroring a fieldless core enum variant for variant.

/// Declares a Python enum. With `mirrors Core`, also `From` both ways between it and the core
/// enum `Core` (in scope by that name), variant for variant.
macro_rules! py_enum {
    (
        $(#[$meta:meta])*
        $name:ident mirrors $core:ident { $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)? }
    ) => {
        $crate::enums::py_enum! { $(#[$meta])* $name { $( $(#[$vmeta])* $variant ),+ } }

        impl From<$core> for $name {
            fn from(v: $core) -> Self {
                match v {
                    $( $core::$variant => $name::$variant ),+
                }
            }
        }

        impl From<$name> for $core {
            fn from(v: $name) -> Self {
                match v {
                    $( $name::$variant => $core::$variant ),+
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[pyo3::pyclass(module = "agentgate._core", eq, eq_int, frozen, hash, from_py_object)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }
    };
}

/// `str(member)` is the core's name for it (`as_str`) and `Enum("name")` looks a member up
/// through the core's `FromStr` (ValueError if unknown, as `enum.Enum` raises).
macro_rules! named_enum {
    ($name:ident, $core:ident) => {
        #[pyo3::pymethods]
        impl $name {
            #[new]
            fn new(name: &str) -> pyo3::PyResult<Self> {
                name.parse::<$core>()
                    .map(Into::into)
                    .map_err(crate::errors::unknown_name)
            }
            fn __str__(&self) -> &'static str {
                $core::from(*self).as_str()
            }
        }
    };
}

pub(crate) use {named_enum, py_enum};
