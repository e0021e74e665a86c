// SOFA Registry's DataBox: field names and Java types of the public model class, for meshport's interop test.
package com.alipay.sofa.registry.core.model;

import java.io.Serializable;

public class DataBox implements Serializable {
  private static final long serialVersionUID = 1L;
  String data;

  public DataBox() {}

  public DataBox(String data) {
    this.data = data;
  }
}
