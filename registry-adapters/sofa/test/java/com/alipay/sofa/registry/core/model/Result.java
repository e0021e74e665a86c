// SOFA Registry's Result: field names and Java types of the public model class, for meshport's interop test.
package com.alipay.sofa.registry.core.model;

import java.io.Serializable;

public class Result implements Serializable {
  private static final long serialVersionUID = 1L;
  boolean success;
  String message;
}
